//! Request and response bodies of the control-plane HTTP API (see `control-plane/openapi.yaml`).
//! Request bodies reject unknown fields. Times are Unix milliseconds (`*_ms`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Labels of a node, and label requirements of a selector.
pub type Labels = BTreeMap<String, String>;

/// The node's WireGuard identity, as reported by its agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireGuardInfo {
    /// Public key (base64).
    pub public_key: String,
    /// `host:port` where peers reach it.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Addresses to route to this node through the tunnel (CIDRs).
    #[serde(default)]
    pub allowed_ips: Vec<String>,
}

/// `POST /v1/tokens` (admin): a one-time join token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// Region of the node that enrolls with it.
    pub region: String,
    /// Labels of that node.
    #[serde(default)]
    pub labels: Labels,
    /// Validity in seconds (default 3600).
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
}

/// The token (shown once; only its hash is stored).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenResponse {
    /// The secret to hand to `ringfence-agent enroll`.
    pub token: String,
    /// Region of the node.
    pub region: String,
    /// Labels of the node.
    pub labels: Labels,
    /// Expiry.
    pub expires_ms: i64,
}

/// `POST /v1/enroll` (no client certificate; the token authenticates).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    /// The join token.
    pub token: String,
    /// PKCS#10 certificate signing request (PEM) for the agent's key; the key stays on the node.
    pub csr_pem: String,
    /// The agent's version.
    #[serde(default)]
    pub agent_version: Option<String>,
    /// The node's hostname, for operators.
    #[serde(default)]
    pub hostname: Option<String>,
    /// The node's WireGuard identity, if it has one already.
    #[serde(default)]
    pub wireguard: Option<WireGuardInfo>,
}

/// The enrolled identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollResponse {
    /// The node id (also the certificate's common name).
    pub node_id: String,
    /// Region from the token.
    pub region: String,
    /// Labels from the token.
    pub labels: Labels,
    /// The client certificate (PEM) for the CSR's key.
    pub certificate_pem: String,
    /// When it expires; renew before (`POST /v1/renew`).
    pub not_after_ms: i64,
    /// The control plane's CA certificate (PEM): trust it for the server, keep it.
    pub ca_pem: String,
    /// The bundle-signing public key (Ed25519, base64): pin it, verify every bundle with it.
    pub bundle_signing_key: String,
    /// Its key id.
    pub bundle_signing_key_id: String,
    /// The WireGuard tunnel addresses the control plane allocated to this node (CIDRs; empty
    /// without a pool for its region): the only addresses its peers route to it.
    #[serde(default)]
    pub tunnel_addresses: Vec<String>,
}

/// `POST /v1/renew` (client certificate): a fresh certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    /// A CSR (PEM) for the key to certify (the same key or a new one).
    pub csr_pem: String,
}

/// A renewed certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewResponse {
    /// The certificate (PEM).
    pub certificate_pem: String,
    /// When it expires.
    pub not_after_ms: i64,
}

/// `POST /v1/report` (client certificate): the node's state, sent at start and on change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeReport {
    /// The agent's version.
    #[serde(default)]
    pub agent_version: Option<String>,
    /// WireGuard identity and endpoint.
    #[serde(default)]
    pub wireguard: Option<WireGuardInfo>,
    /// The policy version in force.
    #[serde(default)]
    pub applied_policy_version: Option<u64>,
    /// The bundle version in force.
    #[serde(default)]
    pub applied_bundle_version: Option<u64>,
    /// The geo-IP database in force (type and build date, or a file hash).
    #[serde(default)]
    pub geo_db_version: Option<String>,
}

/// One node of the inventory (`GET /v1/nodes`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeInfo {
    /// Node id.
    pub node_id: String,
    /// Region.
    pub region: String,
    /// Labels.
    pub labels: Labels,
    /// Hostname given at enrollment.
    pub hostname: Option<String>,
    /// WireGuard identity.
    pub wireguard: Option<WireGuardInfo>,
    /// Agent version.
    pub agent_version: Option<String>,
    /// Policy version the agent applied.
    pub applied_policy_version: Option<u64>,
    /// Bundle version the agent applied.
    pub applied_bundle_version: Option<u64>,
    /// Geo-IP database version.
    pub geo_db_version: Option<String>,
    /// Last request from the agent.
    pub last_seen_ms: Option<i64>,
    /// Enrollment time.
    pub enrolled_ms: i64,
    /// Expiry of the newest certificate issued.
    pub cert_not_after_ms: i64,
    /// Revocation time, if revoked.
    pub revoked_ms: Option<i64>,
    /// Tunnel addresses allocated from the region's pool or pinned by an operator (CIDRs): the
    /// only `allowed_ips` the control plane signs for this node.
    #[serde(default)]
    pub tunnel_addresses: Vec<String>,
}

/// `POST /v1/nodes/{id}/addresses` (admin): pin a node's tunnel addresses (replacing any
/// allocated ones).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressPin {
    /// CIDRs; they must not overlap another node's.
    pub addresses: Vec<String>,
}

/// `POST /v1/nodes/{id}/wireguard-key` (admin): the node's new WireGuard public key (rotation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRotation {
    /// The new public key (base64 of 32 bytes), unique in the fleet.
    pub public_key: String,
}

/// `GET /v1/nodes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeList {
    /// Every node, enrolled order.
    pub nodes: Vec<NodeInfo>,
}

/// `POST /v1/ack` (client certificate): what the agent did with a bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleAck {
    /// The bundle version.
    pub bundle_version: u64,
    /// The policy version it carried.
    pub policy_version: u64,
    /// Whether it is now in force.
    pub applied: bool,
    /// Why not, if not.
    #[serde(default)]
    pub error: Option<String>,
}

/// One event from an agent's spool. `id` is chosen by the agent, unique per node: the control
/// plane stores each (node, id) once however often it is delivered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// Unique per node (e.g. a UUID or boot id + counter).
    pub id: String,
    /// `deny`, `audit-deny`, `plaintext-drop`, `exfiltration`, ...
    pub kind: String,
    /// When it happened on the node.
    pub time_ms: i64,
    /// `info`, `warning` or `critical`.
    #[serde(default = "default_severity")]
    pub severity: String,
    /// One line for humans.
    pub summary: String,
    /// Event-specific fields (destination, rule, cgroup, bytes...).
    #[serde(default)]
    pub details: Value,
}

fn default_severity() -> String {
    "warning".into()
}

/// `POST /v1/events` (client certificate).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventBatch {
    /// Up to 1000 events.
    pub events: Vec<Event>,
}

/// Which events are now stored: the agent may drop all of them from its spool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsAccepted {
    /// Stored by this request.
    pub accepted: Vec<String>,
    /// Already stored by an earlier delivery.
    pub duplicates: Vec<String>,
}

/// A stored event (`GET /v1/alerts`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredEvent {
    /// The node that sent it.
    pub node_id: String,
    /// The event.
    #[serde(flatten)]
    pub event: Event,
    /// When the control plane stored it.
    pub received_ms: i64,
}

/// `GET /v1/alerts`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertList {
    /// Newest first.
    pub alerts: Vec<StoredEvent>,
}

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

/// Every error response: `{"error": "...", "diagnostics": [...]}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// What went wrong and what to do.
    pub error: String,
    /// For a refused policy: every problem, by position.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diagnostics: Vec<PolicyDiagnostic>,
}

/// `GET /v1/audit/verify` (admin).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditVerification {
    /// True when the whole chain recomputes.
    pub ok: bool,
    /// Records checked (up to the first break).
    pub records: u64,
    /// The first edited or deleted record.
    pub first_bad_seq: Option<u64>,
    /// What is wrong there.
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_parse_match_display() {
        let s = Selector::parse("region=eu, gpu=h100").unwrap();
        assert_eq!(s.region.as_deref(), Some("eu"));
        assert_eq!(s.to_string(), "region=eu,gpu=h100");
        let labels: Labels = [("gpu".to_string(), "h100".to_string())].into();
        assert!(s.matches("eu", &labels));
        assert!(!s.matches("us", &labels));
        assert!(!s.matches("eu", &Labels::new()));
        assert!(Selector::parse("").unwrap().matches("anything", &Labels::new()));
        assert_eq!(Selector::parse("").unwrap().to_string(), "*");
        assert_eq!(Selector::parse("region"), Err(SelectorError { item: "region".into() }));
        assert!(Selector::parse("=x").is_err());
    }

    #[test]
    fn request_bodies_reject_unknown_fields() {
        let err = serde_json::from_str::<TokenRequest>(r#"{"region":"eu","ttl":5}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `ttl`"), "{err}");
        let err = serde_json::from_str::<EventBatch>(
            r#"{"events":[{"id":"1","kind":"deny","time_ms":1,"summary":"s","x":1}]}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `x`"), "{err}");
        let ok: EventBatch =
            serde_json::from_str(r#"{"events":[{"id":"1","kind":"deny","time_ms":1,"summary":"s"}]}"#)
                .unwrap();
        assert_eq!(ok.events[0].severity, "warning");
    }
}
