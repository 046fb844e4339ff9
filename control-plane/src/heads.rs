//! The policies in force, from the stored heads (the newest version of each node selector and
//! `metadata.name`): one node default per selector (a policy without `spec.workloadSelector`;
//! the newest of a selector wins, whatever its name, as before workload policies), and every
//! workload policy (with `spec.workloadSelector`; a node gets all of those its selector
//! matches). Also the check that refuses a workload policy overlapping another on some node.

use std::sync::Arc;

use ringfence_policy::{selector_conflicts, Policy};
use ringfence_proto::api::Selector;

use crate::db::PolicyRow;

/// A workload policy head, with its parsed document (for overlap checks).
#[derive(Clone, Debug)]
pub struct WorkloadHead {
    /// The stored version.
    pub row: PolicyRow,
    /// Its document, parsed.
    pub policy: Arc<Policy>,
}

/// The heads, sorted into what bundles carry.
#[derive(Clone, Debug, Default)]
pub struct Heads {
    /// The newest node-default policy of each node selector, newest first.
    pub defaults: Vec<PolicyRow>,
    /// The newest version of each workload policy (node selector and name), newest first.
    pub workloads: Vec<WorkloadHead>,
    /// Every head's node selector and generation (superseded defaults included), for bundle
    /// versions: any change to a policy that can reach a node bumps its bundle.
    pub generations: Vec<(Selector, i64)>,
}

impl Heads {
    /// Sorts `rows` (newest first, one per node selector and name). A document that no longer
    /// parses (stored by an older version) counts as a node default, as it did then.
    pub fn split(rows: Vec<PolicyRow>) -> Heads {
        let mut heads = Heads::default();
        for row in rows {
            heads.generations.push((row.record.selector.clone(), row.generation));
            let parsed =
                row.record.policy_yaml.as_deref().and_then(|y| ringfence_policy::parse_policy(y).ok());
            match parsed {
                Some(policy) if policy.workload_selector.is_some() => {
                    heads.workloads.push(WorkloadHead { row, policy: Arc::new(policy) })
                }
                _ => {
                    if !heads.defaults.iter().any(|d| d.record.selector == row.record.selector) {
                        heads.defaults.push(row);
                    }
                }
            }
        }
        heads
    }
}

/// True if some node can match both selectors (same region or either any region, and no label
/// key required with two different values).
pub fn node_selectors_overlap(a: &Selector, b: &Selector) -> bool {
    let region = match (&a.region, &b.region) {
        (Some(x), Some(y)) => x == y,
        _ => true,
    };
    region && a.labels.iter().all(|(k, v)| b.labels.get(k).is_none_or(|w| w == v))
}

/// Why a workload policy `policy` for nodes `selector` cannot be stored: one message per
/// workload policy in force that can reach a node it reaches and selects a workload it selects
/// (naming both and an example workload label set). Another version of the same policy (same
/// node selector and name) is not a conflict: it replaces it.
pub fn workload_conflicts(workloads: &[WorkloadHead], selector: &Selector, policy: &Policy) -> Vec<String> {
    if policy.workload_selector.is_none() {
        return Vec::new();
    }
    let new_src = format!("being applied, nodes {selector}");
    workloads
        .iter()
        .filter(|w| !(w.row.record.selector == *selector && w.row.record.name == policy.name))
        .filter(|w| node_selectors_overlap(&w.row.record.selector, selector))
        .flat_map(|w| {
            let old_src = format!("version {}, nodes {}", w.row.record.version, w.row.record.selector);
            selector_conflicts(&[(new_src.as_str(), policy), (old_src.as_str(), &w.policy)])
        })
        .map(|c| c.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringfence_proto::api::PolicyRecord;

    fn yaml(name: &str, workload: Option<&str>) -> String {
        let selector = workload
            .map(|w| {
                let (k, v) = w.split_once('=').unwrap();
                format!("  workloadSelector: {{ matchLabels: {{ {k}: {v} }} }}\n")
            })
            .unwrap_or_default();
        format!(
            "apiVersion: ringfence.dev/v1\nkind: EgressPolicy\nmetadata: {{ name: {name} }}\nspec:\n{selector}  defaultAction: allow\n"
        )
    }

    fn row(version: u64, name: &str, selector: &str, workload: Option<&str>) -> PolicyRow {
        PolicyRow {
            record: PolicyRecord {
                version,
                selector: Selector::parse(selector).unwrap(),
                author: "a".into(),
                created_ms: 0,
                sha256: String::new(),
                comment: None,
                rollback_of: None,
                name: name.into(),
                policy_yaml: Some(yaml(name, workload)),
            },
            generation: version as i64,
        }
    }

    #[test]
    fn heads_split_into_one_default_per_selector_and_every_workload_policy() {
        let heads = Heads::split(vec![
            row(5, "train", "region=eu", Some("job=train")),
            row(4, "new-default", "region=eu", None),
            row(3, "old-default", "region=eu", None),
            row(2, "serve", "region=eu", Some("job=serve")),
        ]);
        let names = |rows: Vec<&PolicyRow>| rows.iter().map(|r| r.record.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(heads.defaults.iter().collect()), ["new-default"]);
        assert_eq!(names(heads.workloads.iter().map(|w| &w.row).collect()), ["train", "serve"]);
        assert_eq!(heads.generations.len(), 4);
    }

    #[test]
    fn overlapping_workload_policies_on_a_common_node_conflict() {
        let policy = |name: &str, w: &str| ringfence_policy::parse_policy(&yaml(name, Some(w))).unwrap();
        let heads = Heads::split(vec![row(1, "train", "region=eu", Some("job=train"))]);
        let eu = Selector::parse("region=eu,gpu=h100").unwrap();
        let us = Selector::parse("region=us").unwrap();
        let conflicts = workload_conflicts(&heads.workloads, &eu, &policy("other", "job=train"));
        assert_eq!(conflicts.len(), 1);
        assert!(conflicts[0].contains("\"other\"") && conflicts[0].contains("\"train\""), "{}", conflicts[0]);
        assert!(conflicts[0].contains("job=train"), "{}", conflicts[0]);
        assert!(workload_conflicts(&heads.workloads, &us, &policy("other", "job=train")).is_empty());
        assert!(workload_conflicts(&heads.workloads, &eu, &policy("other", "job=serve")).is_empty());
        let same = Selector::parse("region=eu").unwrap();
        assert!(
            workload_conflicts(&heads.workloads, &same, &policy("train", "job=train")).is_empty(),
            "a new version of the same policy"
        );
    }
}
