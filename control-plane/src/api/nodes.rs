//! The inventory: agents' reports, the operator's list and revocation.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use ringfence_proto::api::{NodeInfo, NodeList, NodeReport};
use serde_json::json;

use super::auth::{Admin, JsonBody, Node, PathArg};
use super::error::{ApiError, ApiResult};
use super::AppState;
use crate::db;

/// `POST /v1/report`.
pub async fn report(
    State(state): State<Arc<AppState>>,
    Node(node): Node,
    JsonBody(report): JsonBody<NodeReport>,
) -> ApiResult<StatusCode> {
    let mut tx = state.db.begin().await?;
    let changed = node.wireguard_changes(&report);
    let generation = if changed { state.db.bump_generation(&mut tx).await? } else { node.generation };
    db::nodes::apply_report(&mut tx, &node, &report, generation).await?;
    if changed {
        let details = json!({"node_id": node.info.node_id, "wireguard": report.wireguard});
        db::audit::append(&mut tx, &format!("node:{}", node.info.node_id), "node.wireguard", details).await?;
    }
    tx.commit().await.map_err(db::DbError::from)?;
    if changed {
        state.hub.reload().await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/nodes`.
pub async fn list(State(state): State<Arc<AppState>>, _: Admin) -> ApiResult<Json<NodeList>> {
    let nodes = db::nodes::list(state.db.pool()).await?;
    Ok(Json(NodeList { nodes: nodes.into_iter().map(|n| n.info).collect() }))
}

/// `POST /v1/nodes/{id}/revoke`.
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    _: Admin,
    PathArg(id): PathArg<String>,
) -> ApiResult<Json<NodeInfo>> {
    let mut tx = state.db.begin().await?;
    let generation = state.db.bump_generation(&mut tx).await?;
    if !db::nodes::revoke(&mut tx, &id, generation).await? {
        // Release the transaction first: SQLite has one connection.
        drop(tx);
        return match db::nodes::get(state.db.pool(), &id).await? {
            Some(n) if n.info.revoked_ms.is_some() => {
                Err(ApiError::new(StatusCode::CONFLICT, format!("node {id} is already revoked")))
            }
            _ => Err(ApiError::not_found(format!("no node {id} (see `ringfence nodes list`)"))),
        };
    }
    db::audit::append(&mut tx, "admin", "node.revoke", json!({"node_id": id})).await?;
    tx.commit().await.map_err(db::DbError::from)?;
    state.hub.reload().await?;
    tracing::info!(node = id, "node revoked");
    let node = db::nodes::get(state.db.pool(), &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no node {id}")))?;
    Ok(Json(node.info))
}
