//! The workloads the agent knows (sans-IO): which cgroups an identity source recognised, their
//! labels, the policy each got, and the kernel entries that follow from that.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::Serialize;

use crate::identity::{Labels, Workload};

/// One workload cgroup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tracked {
    pub cgroup_id: u64,
    pub labels: Labels,
    /// The identity source that recognised it.
    pub source: &'static str,
    /// (policy index, policy name); `None`: no workload policy selects it, the node default
    /// governs it.
    pub policy: Option<(u32, String)>,
    /// Why no policy could be chosen (two selectors matched), if so.
    pub problem: Option<String>,
}

/// Labels as `key=value,...`, without the cgroup path label (events, alerts and tables name
/// the workload by its path already).
pub fn label_string(labels: &Labels) -> String {
    let pairs: Vec<String> = visible_labels(labels).map(|(k, v)| format!("{k}={v}")).collect();
    pairs.join(",")
}

/// The labels a workload is shown and reported with: all but the cgroup path label.
pub fn visible_labels(labels: &Labels) -> impl Iterator<Item = (&String, &String)> {
    labels.iter().filter(|(k, _)| k.as_str() != crate::identity::CGROUP_LABEL)
}

impl Tracked {
    /// [`label_string`] of the workload's labels.
    pub fn label_string(&self) -> String {
        label_string(&self.labels)
    }
}

/// What changed in one update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Added(PathBuf),
    Removed(PathBuf),
    /// Labels or policy changed (the cgroup id is the same).
    Updated(PathBuf),
}

/// The workloads, by cgroup path relative to the root.
#[derive(Debug, Default)]
pub struct WorkloadTable {
    by_path: BTreeMap<PathBuf, Tracked>,
    /// Cgroups no source recognised (path -> id), not resolved again until a full update.
    unrecognised: BTreeMap<PathBuf, u64>,
    /// `by_path`'s paths by cgroup id (rebuilt with it).
    by_id: std::collections::HashMap<u64, PathBuf>,
}

impl WorkloadTable {
    /// Replaces the table with the cgroups in `found` (path, id) that `resolve` recognises,
    /// each given the policy `choose` picks for its labels. Returns what changed. With `all`
    /// false, cgroups already known (same path and id) keep their labels and policy and only
    /// new ones are resolved (what a change of the tree alone needs).
    pub fn update(
        &mut self,
        found: &BTreeMap<PathBuf, u64>,
        all: bool,
        resolve: impl Fn(&Path) -> Option<Workload>,
        choose: impl Fn(&Labels) -> Result<Option<(u32, String)>, String>,
    ) -> Vec<Change> {
        let mut next = BTreeMap::new();
        let mut unrecognised = BTreeMap::new();
        for (path, id) in found {
            if !all {
                if let Some(t) = self.by_path.get(path).filter(|t| t.cgroup_id == *id) {
                    next.insert(path.clone(), t.clone());
                    continue;
                }
                if self.unrecognised.get(path) == Some(id) {
                    unrecognised.insert(path.clone(), *id);
                    continue;
                }
            }
            let Some(w) = resolve(path) else {
                unrecognised.insert(path.clone(), *id);
                continue;
            };
            let (policy, problem) = match choose(&w.labels) {
                Ok(p) => (p, None),
                Err(e) => (None, Some(e)),
            };
            next.insert(
                path.clone(),
                Tracked { cgroup_id: *id, labels: w.labels, source: w.source, policy, problem },
            );
        }
        let mut changes = Vec::new();
        for (path, t) in &next {
            match self.by_path.get(path) {
                None => changes.push(Change::Added(path.clone())),
                Some(old) if old.cgroup_id != t.cgroup_id => {
                    changes.push(Change::Removed(path.clone()));
                    changes.push(Change::Added(path.clone()));
                }
                Some(old) if old != t => changes.push(Change::Updated(path.clone())),
                Some(_) => {}
            }
        }
        changes.extend(
            self.by_path.keys().filter(|p| !next.contains_key(*p)).map(|p| Change::Removed(p.clone())),
        );
        self.by_id = next.iter().map(|(p, t)| (t.cgroup_id, p.clone())).collect();
        self.by_path = next;
        self.unrecognised = unrecognised;
        changes
    }

    /// The kernel's workload entries: cgroup id -> policy index, for workloads with a policy.
    pub fn kernel_entries(&self) -> BTreeMap<u64, u32> {
        self.by_path.values().filter_map(|t| t.policy.as_ref().map(|(i, _)| (t.cgroup_id, *i))).collect()
    }

    pub fn get(&self, path: &Path) -> Option<&Tracked> {
        self.by_path.get(path)
    }

    /// The workload whose cgroup id is `id` (asked for every event: one hash lookup).
    pub fn by_cgroup_id(&self, id: u64) -> Option<(&PathBuf, &Tracked)> {
        let path = self.by_id.get(&id)?;
        self.by_path.get_key_value(path)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&PathBuf, &Tracked)> {
        self.by_path.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(path: &Path) -> Option<Workload> {
        let s = path.to_string_lossy();
        let job = s.strip_prefix("job_")?.split('/').next()?.to_string();
        let mut labels = Labels::new();
        labels.insert("slurm.job".into(), job.clone());
        if job == "1" {
            labels.insert("ringfence.dev/profile".into(), "eu".into());
        }
        Some(Workload { path: path.to_owned(), labels, source: "slurm" })
    }

    fn choose(labels: &Labels) -> Result<Option<(u32, String)>, String> {
        Ok(labels.get("ringfence.dev/profile").map(|_| (3, "eu-resident".to_string())))
    }

    #[test]
    fn recognised_cgroups_become_workloads_and_only_selected_ones_get_entries() {
        let mut t = WorkloadTable::default();
        let found = BTreeMap::from([
            (PathBuf::from("job_1"), 11),
            (PathBuf::from("job_1/step_0"), 12),
            (PathBuf::from("job_2"), 21),
            (PathBuf::from("system.slice"), 5),
        ]);
        let changes = t.update(&found, true, workload, choose);
        assert_eq!(changes.len(), 3, "{changes:?}");
        assert_eq!(t.kernel_entries(), BTreeMap::from([(11, 3), (12, 3)]));
        assert_eq!(t.get(Path::new("job_2")).expect("job 2").policy, None);
        // Job 1 ends; job 2's cgroup is recreated with a new id.
        let changes = t.update(&BTreeMap::from([(PathBuf::from("job_2"), 22)]), false, workload, choose);
        assert!(changes.contains(&Change::Removed(PathBuf::from("job_1"))));
        assert!(changes.contains(&Change::Removed(PathBuf::from("job_1/step_0"))));
        assert!(changes.contains(&Change::Added(PathBuf::from("job_2"))));
        assert!(t.kernel_entries().is_empty());
        assert_eq!(t.by_cgroup_id(22).map(|(p, _)| p.clone()), Some(PathBuf::from("job_2")));
    }

    #[test]
    fn an_ambiguous_choice_leaves_the_node_default_and_says_why() {
        let mut t = WorkloadTable::default();
        t.update(&BTreeMap::from([(PathBuf::from("job_1"), 1)]), true, workload, |_| {
            Err("two policies".into())
        });
        let w = t.get(Path::new("job_1")).expect("tracked");
        assert_eq!((w.policy.clone(), w.problem.as_deref()), (None, Some("two policies")));
        assert!(t.kernel_entries().is_empty());
    }
}
