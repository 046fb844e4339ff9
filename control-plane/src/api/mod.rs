//! The HTTP API (documented in `control-plane/openapi.yaml`, served at `/openapi.yaml`).

mod audit;
pub mod auth;
mod bundle;
mod enroll;
pub mod error;
mod events;
mod mesh;
mod nodes;
mod policies;

use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::Router;
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
    /// Long-polls per node.
    pub long_polls: LongPolls,
    /// Asks for an audit checkpoint now (policy changes).
    pub checkpoints: crate::checkpoint::CheckpointTrigger,
    /// The last refused WireGuard claim of each node (a repeat is not audited again).
    pub refused_claims: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

/// The OpenAPI document.
pub const OPENAPI_YAML: &str = include_str!("../../openapi.yaml");

/// Every route: (method, path as in the OpenAPI document).
pub const ROUTES: &[(&str, &str)] = &[
    ("post", "/v1/tokens"),
    ("post", "/v1/enroll"),
    ("post", "/v1/renew"),
    ("post", "/v1/report"),
    ("get", "/v1/nodes"),
    ("post", "/v1/nodes/{id}/revoke"),
    ("post", "/v1/nodes/{id}/addresses"),
    ("post", "/v1/nodes/{id}/wireguard-key"),
    ("post", "/v1/policies"),
    ("get", "/v1/policies/history"),
    ("get", "/v1/policies/diff"),
    ("post", "/v1/policies/rollback"),
    ("get", "/v1/policies/{version}"),
    ("get", "/v1/bundle"),
    ("post", "/v1/ack"),
    ("post", "/v1/events"),
    ("get", "/v1/alerts"),
    ("get", "/v1/audit"),
    ("get", "/v1/audit/verify"),
    ("get", "/metrics"),
    ("get", "/openapi.yaml"),
    ("get", "/healthz"),
];

/// The router.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/tokens", post(enroll::create_token))
        .route("/v1/enroll", post(enroll::enroll))
        .route("/v1/renew", post(enroll::renew))
        .route("/v1/report", post(nodes::report))
        .route("/v1/nodes", get(nodes::list))
        .route("/v1/nodes/{id}/revoke", post(nodes::revoke))
        .route("/v1/nodes/{id}/addresses", post(mesh::pin_addresses))
        .route("/v1/nodes/{id}/wireguard-key", post(mesh::rotate_key))
        .route("/v1/policies", post(policies::apply))
        .route("/v1/policies/history", get(policies::history))
        .route("/v1/policies/diff", get(policies::diff))
        .route("/v1/policies/rollback", post(policies::rollback))
        .route("/v1/policies/{version}", get(policies::get_version))
        .route("/v1/bundle", get(bundle::long_poll))
        .route("/v1/ack", post(bundle::ack))
        .route("/v1/events", post(events::ingest))
        .route("/v1/alerts", get(events::alerts))
        .route("/v1/audit", get(audit::export))
        .route("/v1/audit/verify", get(audit::verify))
        .route("/metrics", get(audit::metrics))
        .route("/openapi.yaml", get(|| async { ([("content-type", "application/yaml")], OPENAPI_YAML) }))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(state)
}
