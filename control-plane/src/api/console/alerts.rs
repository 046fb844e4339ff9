//! Alerts (every stored event, filtered by kind, region, node and workload, paged by time) and
//! their acknowledgement (operator role, audited).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::principal::{Reader, Role, Writer};
use crate::api::auth::{JsonBody, QueryArgs};
use crate::api::error::{ApiError, ApiResult};
use crate::api::state::AppState;
use crate::db::{self, event_queries::AlertFilter, event_queries::AlertView};

/// `?kind=&region=&node=&workload=&after_ms=&after_node=&after_id=&limit=`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsQuery {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    region: String,
    #[serde(default)]
    node: String,
    #[serde(default)]
    workload: String,
    #[serde(default)]
    after_ms: Option<i64>,
    #[serde(default)]
    after_node: String,
    #[serde(default)]
    after_id: String,
    #[serde(default)]
    limit: Option<i64>,
}

/// `GET /console/api/alerts`: newest first; the next page starts after the last one shown
/// (`after_ms`, `after_node`, `after_id`: its `received_ms`, `node_id` and `id`).
pub async fn list(
    State(state): State<Arc<AppState>>,
    _: Reader,
    QueryArgs(q): QueryArgs<AlertsQuery>,
) -> ApiResult<Json<Vec<AlertView>>> {
    let filter = AlertFilter {
        kind: q.kind,
        region: q.region,
        node: q.node,
        workload: q.workload,
        after: q.after_ms.map(|ms| (ms, q.after_node, q.after_id)),
        limit: q.limit.unwrap_or(100).clamp(1, 1000),
    };
    Ok(Json(db::event_queries::alerts(state.db.pool(), &filter).await?))
}

/// `POST /console/api/alerts/ack`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    node_id: String,
    id: String,
}

/// `POST /console/api/alerts/ack`: 204, or 409 if it was acknowledged already.
pub async fn acknowledge(
    State(state): State<Arc<AppState>>,
    Writer(p): Writer,
    JsonBody(req): JsonBody<AckRequest>,
) -> ApiResult<StatusCode> {
    p.require(Role::Operator)?;
    if !db::event_queries::exists(state.db.pool(), &req.node_id, &req.id).await? {
        return Err(ApiError::not_found(format!("no event {} from node {}", req.id, req.node_id)));
    }
    let mut tx = state.db.begin().await?;
    if !db::accounts::acknowledge(&mut tx, &req.node_id, &req.id, &p.name).await? {
        drop(tx);
        return Err(ApiError::new(StatusCode::CONFLICT, "already acknowledged"));
    }
    let details = json!({"node_id": req.node_id, "id": req.id});
    db::audit::append(&mut tx, &p.actor(), "alert.acknowledge", details).await?;
    tx.commit().await.map_err(db::DbError::from)?;
    Ok(StatusCode::NO_CONTENT)
}
