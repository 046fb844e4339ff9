//! What handlers share ([`AppState`]); a leaf every handler module imports.

use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use tokio::sync::watch;

use crate::db::Db;
use crate::forward::Forwarder;
use crate::hub::Hub;
use crate::limits::{LongPolls, RateLimiter};
use crate::mesh::MeshRules;
use crate::metrics::Metrics;
use crate::pki::Ca;

/// What handlers share.
pub struct AppState {
    /// Storage.
    pub db: Db,
    /// Bundle inputs in memory.
    pub hub: Arc<Hub>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Alert forwarding.
    pub forwarder: Forwarder,
    /// The CA.
    pub ca: Arc<Ca>,
    /// The bundle-signing key.
    pub signing_key: SigningKey,
    /// The admin credential.
    pub admin_token: String,
    /// Client certificate lifetime.
    pub cert_ttl: Duration,
    /// Longest long-poll.
    pub long_poll_max: Duration,
    /// Becomes true at shutdown (long-polls answer at once).
    pub shutdown: watch::Receiver<bool>,
    /// Tunnel address pools and endpoint rules.
    pub mesh: MeshRules,
    /// Reports per node.
    pub reports: RateLimiter,
    /// Events per node.
    pub events: RateLimiter,
    /// Live (allow) flows per node.
    pub live_flows: RateLimiter,
    /// Long-polls per node.
    pub long_polls: LongPolls,
    /// Asks for an audit checkpoint now (policy changes).
    pub checkpoints: crate::checkpoint::CheckpointTrigger,
    /// Console logins per source address.
    pub logins: RateLimiter,
    /// The state directory (the console reads the last audit checkpoint from it).
    pub state_dir: std::path::PathBuf,
    /// Agents' events, stored by group commit.
    pub ingest: crate::ingest::Ingest,
    /// New flows for `GET /v1/observe`.
    pub flows: crate::flows::FlowBus,
    /// What the evidence pack is signed with and where its checkpoints are.
    pub evidence: crate::evidence::EvidenceSources,
    /// The last refused WireGuard claim of each node (a repeat is not audited again).
    pub refused_claims: std::sync::Mutex<std::collections::HashMap<String, String>>,
}
