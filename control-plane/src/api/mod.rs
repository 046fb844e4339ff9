//! The HTTP API (documented in `control-plane/openapi.yaml`, served at `/openapi.yaml`).

mod audit;
pub mod auth;
mod bundle;
pub mod console;
mod enroll;
pub mod error;
mod events;
mod evidence;
mod insight;
mod live_flows;
mod mesh;
mod nodes;
mod observe;
mod policies;
mod state;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

pub use state::AppState;

/// The OpenAPI document.
pub const OPENAPI_YAML: &str = include_str!("../../openapi.yaml");

/// Every route: (method, path as in the OpenAPI document).
pub const ROUTES: &[(&str, &str)] = &[
    ("post", "/v1/tokens"),
    ("post", "/v1/enroll"),
    ("post", "/v1/renew"),
    ("post", "/v1/report"),
    ("get", "/v1/nodes"),
    ("get", "/v1/nodes/{id}"),
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

/// Routes of the flow view and evidence pack (listed with [`ROUTES`] in the OpenAPI document).
pub use insight::ROUTES as INSIGHT_ROUTES;

/// The router.
pub fn router(state: Arc<AppState>) -> Router {
    insight::routes(Router::new())
        .route("/v1/tokens", post(enroll::create_token))
        .route("/v1/enroll", post(enroll::enroll))
        .route("/v1/renew", post(enroll::renew))
        .route("/v1/report", post(nodes::report))
        .route("/v1/nodes", get(nodes::list))
        .route("/v1/nodes/{id}", get(nodes::get))
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
        .merge(console::routes())
        .with_state(state)
}
