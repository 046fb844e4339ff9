//! `POST /v1/flows`: allow verdicts for the live flow view. Deliberately not stored and not
//! audited (an allow per new connection would swamp the events table and the audit chain);
//! checked like events, rate limited per node, then handed to the flow bus.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use ringfence_proto::api::{LiveFlowBatch, LiveFlowsAccepted, StoredEvent};

use super::auth::{JsonBody, Node};
use super::error::{ApiError, ApiResult};
use super::events::{event_problem, MAX_BATCH};
use super::state::AppState;
use crate::metrics::inc;

/// `POST /v1/flows`.
pub async fn publish(
    State(state): State<Arc<AppState>>,
    Node(node): Node,
    JsonBody(batch): JsonBody<LiveFlowBatch>,
) -> ApiResult<Json<LiveFlowsAccepted>> {
    let n = batch.flows.len();
    if n > MAX_BATCH {
        return Err(ApiError::bad_request(format!("at most {MAX_BATCH} flows per request")));
    }
    if let Some(problem) = batch.flows.iter().find_map(event_problem) {
        return Err(ApiError::bad_request(problem));
    }
    if let Some(e) = batch.flows.iter().find(|e| e.kind != "allow") {
        return Err(ApiError::bad_request(format!(
            "flow {} kind {:?}: only allow verdicts travel here (deliver the rest as events)",
            e.id, e.kind
        )));
    }
    let id = &node.info.node_id;
    if let Err(wait) = state.live_flows.take(id, n as u32) {
        inc(&state.metrics.rate_limited);
        return Err(ApiError::too_many(format!("node {id} is over its live flow rate limit"), wait));
    }
    state.metrics.live_flows_dropped.inc_by(batch.dropped);
    state.metrics.live_flows.inc_by(n as u64);
    let now = ringfence_proto::now_ms();
    let flows: Vec<StoredEvent> = batch
        .flows
        .into_iter()
        .map(|event| StoredEvent { node_id: id.clone(), event, received_ms: now })
        .collect();
    state.flows.publish_live(&flows, &state.hub.current());
    Ok(Json(LiveFlowsAccepted { published: n }))
}
