//! Events from agents (stored once per node and id, then forwarded) and the operator's view.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use ringfence_proto::api::{AlertList, EventBatch, EventsAccepted, StoredEvent};
use serde::Deserialize;
use serde_json::json;

use super::auth::{Admin, JsonBody, Node, QueryArgs};
use super::error::{ApiError, ApiResult};
use super::AppState;
use crate::db;
use crate::metrics::inc;

/// Most events in one request.
const MAX_BATCH: usize = 1000;

/// `POST /v1/events`.
pub async fn ingest(
    State(state): State<Arc<AppState>>,
    Node(node): Node,
    JsonBody(batch): JsonBody<EventBatch>,
) -> ApiResult<Json<EventsAccepted>> {
    if batch.events.len() > MAX_BATCH {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_BATCH} events per request; send the rest in another"
        )));
    }
    if let Some(e) = batch.events.iter().find(|e| e.id.is_empty() || e.id.len() > 128) {
        return Err(ApiError::bad_request(format!("event id {:?}: expected 1 to 128 characters", e.id)));
    }
    let id = &node.info.node_id;
    let now = ringfence_proto::now_ms();
    let mut accepted = Vec::new();
    let mut duplicates = Vec::new();
    let mut stored = Vec::new();
    let mut tx = state.db.begin().await?;
    for event in batch.events {
        if db::events::insert(&mut tx, id, &event, now).await? {
            accepted.push(event.id.clone());
            stored.push(StoredEvent { node_id: id.clone(), event, received_ms: now });
        } else {
            duplicates.push(event.id);
        }
    }
    if !stored.is_empty() {
        let alerts: Vec<_> = stored
            .iter()
            .map(|s| json!({"id": s.event.id, "kind": s.event.kind, "severity": s.event.severity, "summary": s.event.summary}))
            .collect();
        db::audit::append(&mut tx, &format!("node:{id}"), "alerts", json!({"node_id": id, "alerts": alerts}))
            .await?;
    }
    tx.commit().await.map_err(db::DbError::from)?;
    for event in stored {
        inc(&state.metrics.events_ingested);
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
