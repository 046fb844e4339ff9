//! What an identity source produces: the labels of a workload (a cgroup under the cgroup root).
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Label key to value, sorted by key (what a policy's `workloadSelector.matchLabels` matches).
pub type Labels = BTreeMap<String, String>;

/// The label every workload gets: its cgroup path relative to the cgroup root.
pub const CGROUP_LABEL: &str = "ringfence.dev/cgroup";

/// The label naming the policy profile a workload asked for (Slurm job comment, static file).
pub const PROFILE_LABEL: &str = "ringfence.dev/profile";

/// A cgroup the identity sources recognised, with its merged labels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    /// The cgroup path relative to the cgroup root (no leading `/`).
    pub path: PathBuf,
    /// The merged labels of every source that recognised the cgroup, plus [`CGROUP_LABEL`].
    pub labels: Labels,
    /// The source with the highest precedence that recognised it (`static`, `slurm`,
    /// `kubernetes`).
    pub source: &'static str,
}
