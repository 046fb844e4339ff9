//! The inventory: agents' reports, the operator's list and revocation.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use ringfence_proto::api::{NodeInfo, NodeList, NodeReport};
use serde_json::json;

use super::auth::{Admin, JsonBody, Node, PathArg, PeerAddr};
use super::error::{ApiError, ApiResult};
use super::mesh;
use super::state::AppState;
use crate::db;
use crate::mesh::Binding;
use crate::metrics::inc;

/// The largest version the database stores (BIGINT): a larger one is refused, not wrapped to a
/// negative number that reads back as 0.
pub const MAX_STORED_VERSION: u64 = i64::MAX as u64;

/// Refuses version fields the database cannot hold.
pub(super) fn check_versions(fields: &[(&str, Option<u64>)]) -> ApiResult<()> {
    let problems: Vec<String> = fields
        .iter()
        .filter_map(|(name, v)| {
            v.filter(|v| *v > MAX_STORED_VERSION).map(|v| format!("{name} {v}: at most {MAX_STORED_VERSION}"))
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::bad_request(problems.join("; ")))
    }
}

/// `POST /v1/report`: rate limited per node; a WireGuard claim is checked (refused: 409,
/// audited, alerted); only a change of the accepted identity makes new bundles.
pub async fn report(
    State(state): State<Arc<AppState>>,
    Node(node): Node,
    PeerAddr(source): PeerAddr,
    JsonBody(report): JsonBody<NodeReport>,
) -> ApiResult<StatusCode> {
    let id = node.info.node_id.clone();
    if let Err(wait) = state.reports.take(&id, 1) {
        inc(&state.metrics.rate_limited);
        return Err(ApiError::too_many(
            format!("more than {} reports a minute from node {id}; retry later", state.reports.burst()),
            wait,
        ));
    }
    check_versions(&[
        ("applied_policy_version", report.applied_policy_version),
        ("applied_bundle_version", report.applied_bundle_version),
    ])?;
    let mut tx = state.db.begin().await?;
    let mut changed = None;
    if let Some(claim) = &report.wireguard {
        let binding = Binding {
            region: &node.info.region,
            key: node.bound_key(),
            addresses: &node.info.tunnel_addresses,
            source: source.ip(),
        };
        match mesh::check(&state, &mut tx, &id, binding, claim).await? {
            Ok(accepted) => {
                mesh::accepted(&state, &id);
                changed = Some(accepted).filter(|a| node.info.wireguard.as_ref() != Some(a));
            }
            Err(problems) => {
                drop(tx);
                return Err(mesh::refuse(&state, &id, source.ip(), claim, problems).await);
            }
        }
    }
    if let Some(accepted) = &changed {
        let generation = state.db.bump_generation(&mut tx).await?;
        db::nodes::set_wireguard(&mut tx, &id, accepted, generation).await?;
        let details = json!({"node_id": id, "wireguard": accepted});
        db::audit::append(&mut tx, &format!("node:{id}"), "node.wireguard", details).await?;
    }
    let workloads = report.workloads.as_ref().filter(|w| **w != node.info.workloads);
    if let Some(workloads) = workloads {
        check_workloads(workloads)?;
        // Other nodes' bundles carry these workloads: a new generation re-renders them.
        let generation = state.db.bump_generation(&mut tx).await?;
        db::nodes::set_workloads(&mut tx, &id, workloads, generation).await?;
        tracing::info!(node = id, workloads = workloads.len(), "node workloads changed");
    }
    if let Some(peers) = &report.wireguard_peers {
        if peers.len() > ringfence_proto::api::MAX_REPORTED_PEERS {
            return Err(ApiError::bad_request(format!(
                "{} WireGuard peers reported: at most {}",
                peers.len(),
                ringfence_proto::api::MAX_REPORTED_PEERS
            )));
        }
        db::nodes::set_wireguard_peers(&mut tx, &id, peers).await?;
    }
    db::history::record_report(&mut tx, &node, &report, ringfence_proto::now_ms()).await?;
    db::nodes::apply_report(&mut tx, &node, &report).await?;
    tx.commit().await.map_err(db::DbError::from)?;
    if changed.is_some() || workloads.is_some() {
        state.hub.reload().await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// The most workloads a node may report.
pub const MAX_WORKLOADS: usize = 4096;

/// Refuses an oversized workload report.
fn check_workloads(workloads: &[ringfence_proto::api::WorkloadReport]) -> ApiResult<()> {
    if workloads.len() > MAX_WORKLOADS {
        return Err(ApiError::bad_request(format!(
            "{} workloads reported: at most {MAX_WORKLOADS} per node",
            workloads.len()
        )));
    }
    Ok(())
}

/// `GET /v1/nodes/{id}`: one node, with its reported workloads.
pub async fn get(
    State(state): State<Arc<AppState>>,
    _: Admin,
    PathArg(id): PathArg<String>,
) -> ApiResult<Json<NodeInfo>> {
    let node = db::nodes::get(state.db.pool(), &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no node {id} (see `ringfence nodes list`)")))?;
    Ok(Json(node.info))
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

#[cfg(test)]
mod tests {
    use super::*;

    // Found while fuzzing the API: versions above i64::MAX were accepted (204), bound as a
    // negative BIGINT and read back as 0.
    #[test]
    fn versions_beyond_bigint_refused() {
        assert!(check_versions(&[("a", None), ("b", Some(0)), ("c", Some(MAX_STORED_VERSION))]).is_ok());
        let e = check_versions(&[("applied_bundle_version", Some(u64::MAX)), ("x", Some(1))]).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e
            .body
            .error
            .contains("applied_bundle_version 18446744073709551615: at most 9223372036854775807"));
        assert!(check_versions(&[("v", Some(MAX_STORED_VERSION + 1))]).is_err());
    }
}
