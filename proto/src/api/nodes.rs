//! Join tokens, enrollment and renewal, the node inventory and reports, bundle acknowledgements.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

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

/// One workload (cgroup) of a node, as its agent reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadReport {
    /// The cgroup path, relative to the agent's `--cgroup-root`.
    pub path: String,
    /// Its labels (from the agent's identity sources).
    #[serde(default)]
    pub labels: Labels,
    /// The `metadata.name` of the policy governing it (the node default when no workload
    /// policy selects it); absent when none is in force for it.
    #[serde(default)]
    pub policy: Option<String>,
}

/// One WireGuard peer as the node's interface sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireGuardPeerStatus {
    /// The peer's public key (base64).
    pub public_key: String,
    /// Where the interface sends to it now (`host:port`), if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// The last completed handshake (Unix ms); absent: none yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handshake_ms: Option<i64>,
}

/// The most WireGuard peers a report may list.
pub const MAX_REPORTED_PEERS: usize = 4096;

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
    /// The node's workloads, all of them (absent: unchanged; agents without `--cgroup-root`
    /// send none, and leave the field out for control planes that predate it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workloads: Option<Vec<WorkloadReport>>,
    /// The WireGuard interface's peers and their last handshakes (absent: no WireGuard, or
    /// unchanged; agents send it with every periodic report).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard_peers: Option<Vec<WireGuardPeerStatus>>,
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
    /// The workloads its agent reported last (other nodes' bundles carry them, with
    /// `tunnel_addresses`, as remote workloads; left out when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workloads: Vec<WorkloadReport>,
    /// Its WireGuard peers as its agent last reported them, with their last handshakes (not
    /// part of bundles; left out when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wireguard_peers: Vec<WireGuardPeerStatus>,
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
