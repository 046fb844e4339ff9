//! Per-workload policies: which policy enforces a workload (by its labels), and which sets of
//! policies cannot be loaded together because two of them could select the same workload.
//! Sans-IO: the caller reads the policies and the workload's labels.

use std::collections::BTreeMap;
use std::fmt;

use crate::model::{format_labels, Policy};

/// Two policies that could enforce the same workload: their selectors overlap (some label set
/// matches both), or both are node-default policies (no `spec.workloadSelector`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelectorConflict {
    /// The first policy's `metadata.name` and source (e.g. its file name), in input order.
    pub first: (String, String),
    /// The second policy's name and source.
    pub second: (String, String),
    /// A label set both select: the union of their `matchLabels` (empty for two node defaults).
    pub example: BTreeMap<String, String>,
    /// True if both are node-default policies.
    pub both_default: bool,
}

/// `policy "a" (a.yaml) and policy "b" (b.yaml) both select workloads labelled {k=v}; ...`.
impl fmt::Display for SelectorConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ((a, a_src), (b, b_src)) = (&self.first, &self.second);
        write!(f, "policy \"{a}\" ({a_src}) and policy \"{b}\" ({b_src}) ")?;
        if self.both_default {
            f.write_str(
                "are both node-default policies (no spec.workloadSelector): a node has one default; give one of them a workloadSelector",
            )
        } else {
            write!(
                f,
                "both select workloads labelled {}: make their workloadSelectors differ in the value of a common label key",
                format_labels(&self.example)
            )
        }
    }
}

/// Every pair of `policies` (source name, policy) that could enforce the same workload, in input
/// order: two selectors overlap when no key is in both with different values; two node-default
/// policies conflict too. A node-default policy does not conflict with selecting ones (they
/// take precedence over it).
pub fn selector_conflicts(policies: &[(&str, &Policy)]) -> Vec<SelectorConflict> {
    let mut conflicts = Vec::new();
    for (i, (a_src, a)) in policies.iter().enumerate() {
        for (b_src, b) in &policies[i + 1..] {
            let (example, both_default) = match (&a.workload_selector, &b.workload_selector) {
                (None, None) => (Some(BTreeMap::new()), true),
                (Some(x), Some(y)) => (x.example_both(y), false),
                _ => (None, false),
            };
            if let Some(example) = example {
                conflicts.push(SelectorConflict {
                    first: (a.name.clone(), (*a_src).to_owned()),
                    second: (b.name.clone(), (*b_src).to_owned()),
                    example,
                    both_default,
                });
            }
        }
    }
    conflicts
}

/// Two policies select the same workload.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("policies \"{first}\" and \"{second}\" both select the workload labelled {labels}; their workloadSelectors overlap (see selector_conflicts)")]
pub struct AmbiguousPolicy {
    pub first: String,
    pub second: String,
    /// The workload's labels, as `{k=v, ...}`.
    pub labels: String,
}

/// The policy enforcing a workload with `labels`: the one whose `spec.workloadSelector` matches.
/// `Ok(None)` if none does (the node-default policy applies: the one without a selector).
/// An error naming two matching policies if more than one does.
pub fn policy_for<'a>(
    policies: &'a [Policy],
    labels: &BTreeMap<String, String>,
) -> Result<Option<&'a Policy>, AmbiguousPolicy> {
    let mut matching =
        policies.iter().filter(|p| p.workload_selector.as_ref().is_some_and(|s| s.matches(labels)));
    let first = matching.next();
    match (first, matching.next()) {
        (Some(a), Some(b)) => Err(AmbiguousPolicy {
            first: a.name.clone(),
            second: b.name.clone(),
            labels: format_labels(labels),
        }),
        (first, _) => Ok(first),
    }
}
