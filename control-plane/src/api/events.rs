//! Events from agents (stored once per node and id, then forwarded) and the operator's view.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use ringfence_proto::api::{AlertList, EventBatch, EventsAccepted, StoredEvent};
use serde::Deserialize;

use super::auth::{Admin, JsonBody, Node, QueryArgs};
use super::error::{ApiError, ApiResult};
use super::state::AppState;
use crate::db;
use crate::metrics::inc;

/// Most events in one request.
pub(super) const MAX_BATCH: usize = 1000;
/// Longest summary (characters).
const MAX_SUMMARY: usize = 1024;
/// Largest `details` (bytes of JSON).
const MAX_DETAILS: usize = 16 << 10;
/// Stored severities.
pub const SEVERITIES: &[&str] = &["info", "warning", "critical"];

/// What is wrong with an event, if anything.
pub(super) fn event_problem(e: &ringfence_proto::api::Event) -> Option<String> {
    let kind_ok = e.kind.len() <= 48
        && e.kind.starts_with(|c: char| c.is_ascii_lowercase())
        && e.kind.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if e.id.is_empty() || e.id.len() > 128 {
        Some(format!("event id {:?}: expected 1 to 128 characters", e.id))
    } else if !kind_ok {
        Some(format!(
            "event {} kind {:?}: expected lowercase letters, digits and '-' (e.g. deny, plaintext-drop)",
            e.id, e.kind
        ))
    } else if !SEVERITIES.contains(&e.severity.as_str()) {
        Some(format!("event {} severity {:?}: expected info, warning or critical", e.id, e.severity))
    } else if e.summary.chars().count() > MAX_SUMMARY {
        Some(format!("event {} summary: at most {MAX_SUMMARY} characters", e.id))
    } else if e.details.to_string().len() > MAX_DETAILS {
        Some(format!("event {} details: at most {MAX_DETAILS} bytes of JSON", e.id))
    } else {
        None
    }
}

/// Why a self-test result of node `node_id` is refused, if it is: it must carry its node's
/// signature ([`ringfence_proto::selftest`]), by a certificate this control plane issued to that
/// node, over exactly this event's id, time and result.
fn selftest_problem(e: &ringfence_proto::api::Event, node_id: &str, ca_pem: &str) -> Option<String> {
    if !crate::evidence::fleet::is_selftest(&e.kind) {
        return None;
    }
    ringfence_proto::selftest::verify(node_id, &e.id, e.time_ms, &e.details, ca_pem)
        .err()
        .map(|why| format!("self-test result {} refused: {why}", e.id))
}

/// The kind a self-test result is stored under when its signature does not hold: an alert,
/// never evidence that the control worked.
pub const REFUSED_RESULT: &str = "refused-result";

/// `e` as a [`REFUSED_RESULT`] alert saying `why` (same id, so the node's spool moves on and a
/// retry is a duplicate; the rest of the batch is stored as usual).
fn refused_result(e: ringfence_proto::api::Event, why: String) -> ringfence_proto::api::Event {
    ringfence_proto::api::Event {
        details: serde_json::json!({"refused_kind": e.kind, "why": why}),
        kind: REFUSED_RESULT.into(),
        severity: "warning".into(),
        summary: why,
        ..e
    }
}

/// `POST /v1/events`: rate limited per node (`--event-rate`, `--event-burst`: 429 with
/// Retry-After, nothing stored); each stored event gets its own audit record (written by the
/// group commit of [`crate::ingest`]).
pub async fn ingest(
    State(state): State<Arc<AppState>>,
    Node(node): Node,
    JsonBody(batch): JsonBody<EventBatch>,
) -> ApiResult<Json<EventsAccepted>> {
    let n = batch.events.len();
    if n > MAX_BATCH.min(state.events.burst() as usize) {
        return Err(ApiError::bad_request(format!(
            "at most {} events per request; send the rest in another",
            MAX_BATCH.min(state.events.burst() as usize)
        )));
    }
    if let Some(problem) = batch.events.iter().find_map(event_problem) {
        return Err(ApiError::bad_request(problem));
    }
    let id = &node.info.node_id;
    // A self-test result whose signature does not hold is kept as an alert, not as a result: a
    // refused batch would block every later alert of the node behind it in its spool.
    let mut batch = batch;
    batch.events = batch
        .events
        .into_iter()
        .map(|e| match selftest_problem(&e, id, &state.ca.pem) {
            Some(problem) => {
                tracing::warn!(node = %id, problem, "a self-test result was refused");
                refused_result(e, problem)
            }
            None => e,
        })
        .collect();
    if let Err(wait) = state.events.take(id, n as u32) {
        inc(&state.metrics.rate_limited);
        return Err(ApiError::too_many(format!("node {id} is over its event rate limit; retry later"), wait));
    }
    let now = ringfence_proto::now_ms();
    // Stored together with the requests of other nodes that arrive meanwhile (one transaction).
    let written = state.ingest.store(id, batch.events, now).await.map_err(|e| {
        tracing::error!(error = %e, "storage failure");
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            format!("{e} (the control plane's database is failing; retry later)"),
        )
    })?;
    let mut accepted = Vec::new();
    let mut duplicates = Vec::new();
    let mut stored = Vec::new();
    for (event, fresh) in written.events.into_iter().zip(written.fresh) {
        if fresh {
            accepted.push(event.id.clone());
            stored.push(StoredEvent { node_id: id.clone(), event, received_ms: now });
        } else {
            duplicates.push(event.id);
        }
    }
    state.flows.publish(&stored, &state.hub.current());
    for event in stored {
        state.metrics.event_stored(&event.event.kind);
        state.forwarder.send(event);
    }
    for _ in &duplicates {
        inc(&state.metrics.events_duplicate);
    }
    Ok(Json(EventsAccepted { accepted, duplicates }))
}

/// `?limit=N`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsQuery {
    #[serde(default)]
    limit: Option<i64>,
}

/// `GET /v1/alerts`.
pub async fn alerts(
    State(state): State<Arc<AppState>>,
    _: Admin,
    QueryArgs(q): QueryArgs<AlertsQuery>,
) -> ApiResult<Json<AlertList>> {
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    Ok(Json(AlertList { alerts: db::events::recent(state.db.pool(), limit).await? }))
}
