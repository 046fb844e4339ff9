//! Node selectors, applying and rolling back policies, their history and diagnostics.

use serde::{Deserialize, Serialize};

use super::nodes::Labels;

/// A selector with neither region nor labels selects every node.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    /// Only nodes of this region.
    #[serde(default)]
    pub region: Option<String>,
    /// Only nodes with all these labels.
    #[serde(default)]
    pub labels: Labels,
}

/// Why a selector string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid selector item {item:?}: expected KEY=VALUE, e.g. region=eu,gpu=h100")]
pub struct SelectorError {
    /// The offending item.
    pub item: String,
}

impl Selector {
    /// Parses `region=eu,k=v` (`region` sets the region, other keys are labels; empty: all).
    pub fn parse(text: &str) -> Result<Selector, SelectorError> {
        let mut selector = Selector::default();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let Some((k, v)) = item.split_once('=') else {
                return Err(SelectorError { item: item.into() });
            };
            let (k, v) = (k.trim(), v.trim());
            if k.is_empty() || v.is_empty() {
                return Err(SelectorError { item: item.into() });
            }
            if k == "region" {
                selector.region = Some(v.into());
            } else {
                selector.labels.insert(k.into(), v.into());
            }
        }
        Ok(selector)
    }

    /// Whether a node with this region and labels is selected.
    pub fn matches(&self, region: &str, labels: &Labels) -> bool {
        self.region.as_deref().is_none_or(|r| r == region)
            && self.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
    }
}

/// Shows as [`Selector::parse`] reads it (`*` for all nodes).
impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut items: Vec<String> = self.region.iter().map(|r| format!("region={r}")).collect();
        items.extend(self.labels.iter().map(|(k, v)| format!("{k}={v}")));
        if items.is_empty() {
            f.write_str("*")
        } else {
            f.write_str(&items.join(","))
        }
    }
}

/// `POST /v1/policies` (admin).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyApplyRequest {
    /// The `EgressPolicy` YAML document.
    pub policy_yaml: String,
    /// Which nodes it is for.
    #[serde(default)]
    pub selector: Selector,
    /// Who applies it (recorded in history and audit log).
    #[serde(default)]
    pub author: Option<String>,
    /// Why.
    #[serde(default)]
    pub comment: Option<String>,
    /// Refuse (409) instead of storing when the selector matches no enrolled node.
    #[serde(default)]
    pub strict: bool,
}

/// `POST /v1/policies/rollback` (admin): re-apply an old version as a new version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// The version to re-apply.
    pub version: u64,
    /// Who.
    #[serde(default)]
    pub author: Option<String>,
}

/// One stored policy version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRecord {
    /// Monotonic version (1, 2, ...).
    pub version: u64,
    /// Which nodes it is for.
    pub selector: Selector,
    /// Who applied it.
    pub author: String,
    /// When.
    pub created_ms: i64,
    /// SHA-256 (hex) of the YAML.
    pub sha256: String,
    /// Why.
    pub comment: Option<String>,
    /// The version this one re-applies, for a rollback.
    pub rollback_of: Option<u64>,
    /// The policy's `metadata.name`.
    pub name: String,
    /// The YAML (only in `GET /v1/policies/{version}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_yaml: Option<String>,
}

/// Result of applying (or rolling back) a policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyApplied {
    /// The stored version.
    pub policy: PolicyRecord,
    /// Enrolled, unrevoked nodes for which it is now the newest matching policy.
    pub nodes: Vec<String>,
}

/// `GET /v1/policies/history`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyHistory {
    /// Newest first.
    pub policies: Vec<PolicyRecord>,
}

/// `GET /v1/policies/diff?from=A&to=B`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDiff {
    /// Old version.
    pub from: u64,
    /// New version.
    pub to: u64,
    /// Unified line diff of the YAML (empty when identical).
    pub diff: String,
}

/// One problem in a refused policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDiagnostic {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}
