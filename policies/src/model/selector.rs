//! Workload selectors: `spec.workloadSelector` (which workloads a policy enforces) and
//! `from.workloads` of an ingress rule (which workloads a connection may come from).

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

/// `{ matchLabels: { key: value, ... } }`: selects the workloads (cgroups: Slurm jobs,
/// Kubernetes pods, services) whose labels include every pair. Validated selectors are never
/// empty.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Selector {
    /// `matchLabels`, by key.
    pub match_labels: BTreeMap<String, String>,
}

impl Selector {
    /// True if `labels` has every key of `matchLabels` with the same value (extra labels are
    /// ignored).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
    }

    /// True if some label set matches both selectors: no key is in both with different values.
    pub fn overlaps(&self, other: &Selector) -> bool {
        self.match_labels.iter().all(|(k, v)| other.match_labels.get(k).is_none_or(|w| w == v))
    }

    /// The smallest label set both selectors match (the union of their `matchLabels`), if they
    /// overlap.
    pub fn example_both(&self, other: &Selector) -> Option<BTreeMap<String, String>> {
        self.overlaps(other).then(|| {
            let mut labels = self.match_labels.clone();
            labels.extend(other.match_labels.iter().map(|(k, v)| (k.clone(), v.clone())));
            labels
        })
    }
}

/// `{a=1, b=2}`.
pub(crate) fn format_labels(labels: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{{{}}}", pairs.join(", "))
}

/// `{ringfence.dev/profile=eu-resident}`.
impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_labels(&self.match_labels))
    }
}
