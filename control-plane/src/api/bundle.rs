//! Bundle long-poll and acknowledgements.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ringfence_proto::api::BundleAck;
use serde::Deserialize;
use serde_json::json;

use super::auth::{JsonBody, Node, QueryArgs};
use super::error::ApiResult;
use super::state::AppState;
use crate::db;
use crate::metrics::{inc, WatcherGuard};
use crate::render;

/// `?after=V&wait=S`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PollQuery {
    /// The bundle version the agent has (0: none).
    #[serde(default)]
    after: u64,
    /// Seconds to wait for a newer one (0: answer at once).
    #[serde(default)]
    wait: u64,
}

/// `GET /v1/bundle`: the node's signed bundle as soon as its version is above `after`; 204 when
/// `wait` seconds pass without one (or the server shuts down).
pub async fn long_poll(
    State(state): State<Arc<AppState>>,
    Node(node): Node,
    QueryArgs(q): QueryArgs<PollQuery>,
) -> ApiResult<Response> {
    let id = node.info.node_id;
    let wait = Duration::from_secs(q.wait).min(state.long_poll_max);
    let deadline = tokio::time::Instant::now() + wait;
    let mut updates = state.hub.subscribe();
    let mut shutdown = state.shutdown.clone();
    let mut slot = state.long_polls.register(&id);
    // Counted once subscribed and registered: a test that sees the gauge knows the poll waits.
    let _watching = WatcherGuard::new(&state.metrics.watchers);
    loop {
        let snapshot = updates.borrow_and_update().clone();
        if snapshot.node(&id).is_some_and(|n| n.info.revoked_ms.is_some()) {
            return Ok(StatusCode::FORBIDDEN.into_response());
        }
        if render::bundle_version(&snapshot, &id) > q.after {
            if let Some((bundle, signed)) = render::render_signed(&snapshot, &id, &state.signing_key) {
                inc(&state.metrics.bundles_served);
                tracing::debug!(node = id, version = bundle.version, "bundle served");
                return Ok(Json(signed).into_response());
            }
        }
        if *shutdown.borrow() {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        tokio::select! {
            changed = updates.changed() => if changed.is_err() { return Ok(StatusCode::NO_CONTENT.into_response()) },
            _ = tokio::time::sleep_until(deadline) => return Ok(StatusCode::NO_CONTENT.into_response()),
            closed = shutdown.changed() => if closed.is_err() { return Ok(StatusCode::NO_CONTENT.into_response()) },
            // A newer long-poll of the same node took this one's place (--max-long-polls-per-node).
            _ = slot.superseded.changed() => return Ok(StatusCode::NO_CONTENT.into_response()),
        }
    }
}

/// `POST /v1/ack`.
pub async fn ack(
    State(state): State<Arc<AppState>>,
    Node(node): Node,
    JsonBody(ack): JsonBody<BundleAck>,
) -> ApiResult<StatusCode> {
    super::nodes::check_versions(&[
        ("bundle_version", Some(ack.bundle_version)),
        ("policy_version", Some(ack.policy_version)),
    ])?;
    let id = &node.info.node_id;
    let mut tx = state.db.begin().await?;
    if ack.applied {
        db::nodes::set_applied(&mut tx, id, ack.bundle_version, ack.policy_version).await?;
    }
    let details = json!({
        "node_id": id, "bundle_version": ack.bundle_version, "policy_version": ack.policy_version,
        "applied": ack.applied, "error": ack.error,
    });
    db::audit::append(&mut tx, &format!("node:{id}"), "bundle.ack", details).await?;
    tx.commit().await.map_err(db::DbError::from)?;
    inc(&state.metrics.bundle_acks);
    if !ack.applied {
        tracing::warn!(node = id, version = ack.bundle_version, error = ?ack.error, "agent did not apply a bundle");
    }
    Ok(StatusCode::NO_CONTENT)
}
