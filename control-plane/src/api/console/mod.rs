//! The operator console: a single-page app (built from `console/` and embedded, [`assets`])
//! and its JSON API under `/console/api/`, on the control plane's TLS listener. Users are
//! operator accounts with roles or the admin credential ([`principal`], [`session`]); every
//! response carries a strict Content-Security-Policy (no inline script or style, nothing from
//! other origins) and the other headers of an admin surface.

mod accounts;
mod alerts;
mod assets;
mod audit_view;
mod fleet;
mod flows;
mod passwords;
mod policy_view;
pub mod principal;
mod session;

use std::sync::Arc;

use axum::http::header::{self, HeaderValue};
use axum::response::Response;
use axum::routing::{delete, get, post};
use axum::Router;

use crate::api::state::AppState;

/// The console's Content-Security-Policy.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
    connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Every console route: (method, path).
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/console"),
    ("get", "/console/"),
    ("get", "/console/{*path}"),
    ("post", "/console/api/login"),
    ("post", "/console/api/logout"),
    ("get", "/console/api/session"),
    ("get", "/console/api/accounts"),
    ("post", "/console/api/accounts"),
    ("delete", "/console/api/accounts/{name}"),
    ("get", "/console/api/fleet"),
    ("get", "/console/api/nodes/{id}"),
    ("get", "/console/api/policies"),
    ("get", "/console/api/policies/diff"),
    ("post", "/console/api/policies/apply"),
    ("post", "/console/api/policies/rollback"),
    ("get", "/console/api/alerts"),
    ("post", "/console/api/alerts/ack"),
    ("get", "/console/api/flows"),
    ("get", "/console/api/audit"),
    ("get", "/console/api/audit/status"),
];

fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let set = [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::STRICT_TRANSPORT_SECURITY, "max-age=31536000"),
        (header::HeaderName::from_static("cross-origin-opener-policy"), "same-origin"),
        (header::HeaderName::from_static("cross-origin-resource-policy"), "same-origin"),
    ];
    for (name, value) in set {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// The console's routes (merged into [`crate::api::router`]).
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/console", get(assets::redirect))
        .route("/console/", get(assets::index))
        .route("/console/{*path}", get(assets::file))
        .route("/console/api/login", post(session::login))
        .route("/console/api/logout", post(session::logout))
        .route("/console/api/session", get(session::current))
        .route("/console/api/accounts", get(accounts::list).post(accounts::add))
        .route("/console/api/accounts/{name}", delete(accounts::remove))
        .route("/console/api/fleet", get(fleet::fleet))
        .route("/console/api/nodes/{id}", get(fleet::node))
        .route("/console/api/policies", get(policy_view::list))
        .route("/console/api/policies/diff", get(policy_view::diff))
        .route("/console/api/policies/apply", post(policy_view::apply))
        .route("/console/api/policies/rollback", post(policy_view::rollback))
        .route("/console/api/alerts", get(alerts::list))
        .route("/console/api/alerts/ack", post(alerts::acknowledge))
        .route("/console/api/flows", get(flows::flows))
        .route("/console/api/audit", get(audit_view::page))
        .route("/console/api/audit/status", get(audit_view::status))
        .layer(tower::util::MapResponseLayer::new(security_headers))
}
