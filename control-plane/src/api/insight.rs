//! Routes of the live flow view and the evidence pack (registered by one line in the router).

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

use super::state::AppState;
use super::{evidence, live_flows, observe};

/// (method, path as in the OpenAPI document) of these routes.
pub const ROUTES: &[(&str, &str)] = &[("get", "/v1/observe"), ("post", "/v1/flows"), ("get", "/v1/evidence")];

/// Adds them to `router`.
pub fn routes(router: Router<Arc<AppState>>) -> Router<Arc<AppState>> {
    router
        .route("/v1/observe", get(observe::observe))
        .route("/v1/flows", post(live_flows::publish))
        .route("/v1/evidence", get(evidence::export))
}
