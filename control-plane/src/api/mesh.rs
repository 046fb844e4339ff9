//! WireGuard claims from nodes (enrollment and reports) checked against [`crate::mesh`], with
//! refusals audited and alerted; and the operator's side: pinning tunnel addresses and rotating
//! a node's key, both audited.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use ipnet::IpNet;
use ringfence_proto::api::{AddressPin, Event, KeyRotation, NodeInfo, StoredEvent, WireGuardInfo};
use serde_json::json;

use super::auth::{Admin, JsonBody, PathArg};
use super::error::{ApiError, ApiResult};
use super::state::AppState;
use crate::db::{self, NodeRow, Tx};
use crate::mesh::{self, Binding};
use crate::metrics::inc;

/// The event kind of a refused claim.
pub const CLAIM_REFUSED: &str = "mesh-claim-refused";

/// Checks a node's claim, including that no other node holds the key; the accepted identity or
/// every problem.
pub async fn check(
    state: &AppState,
    tx: &mut Tx,
    node_id: &str,
    binding: Binding<'_>,
    claim: &WireGuardInfo,
) -> ApiResult<Result<WireGuardInfo, Vec<String>>> {
    let mut result = mesh::check_claim(&state.mesh, binding, claim);
    if let Ok(accepted) = &result {
        if let Some(owner) = db::nodes::key_owner(tx, &accepted.public_key).await?.filter(|o| o != node_id) {
            result = Err(vec![format!(
                "public_key {}: already bound to node {owner} (WireGuard keys are unique in the fleet)",
                accepted.public_key
            )]);
        }
    }
    Ok(result)
}

/// Refuses a claim: an audit record and a critical event (forwarded like any alert), once per
/// distinct claim of a node; the 409 to answer.
pub async fn refuse(
    state: &AppState,
    node_id: &str,
    source: IpAddr,
    claim: &WireGuardInfo,
    problems: Vec<String>,
) -> ApiError {
    let message = format!("WireGuard claim refused: {}", problems.join("; "));
    inc(&state.metrics.claims_refused);
    let text = serde_json::to_string(claim).expect("claim serializes");
    let repeat = {
        let mut last = state.refused_claims.lock().unwrap_or_else(|e| e.into_inner());
        last.insert(node_id.to_owned(), text.clone()).as_deref() == Some(text.as_str())
    };
    tracing::warn!(node = node_id, %source, problems = %problems.join("; "), repeat, "WireGuard claim refused");
    if !repeat {
        if let Err(e) = record_refusal(state, node_id, source, claim, &problems).await {
            tracing::error!(error = %e, node = node_id, "the refused claim could not be audited");
        }
    }
    ApiError::new(StatusCode::CONFLICT, message)
}

async fn record_refusal(
    state: &AppState,
    node_id: &str,
    source: IpAddr,
    claim: &WireGuardInfo,
    problems: &[String],
) -> Result<(), db::DbError> {
    let now = ringfence_proto::now_ms();
    let details =
        json!({"node_id": node_id, "source": source.to_string(), "claim": claim, "problems": problems});
    let event = Event {
        id: format!("{CLAIM_REFUSED}-{now}-{:08x}", rand::random::<u32>()),
        kind: CLAIM_REFUSED.into(),
        time_ms: now,
        severity: "critical".into(),
        summary: format!(
            "node {node_id} claimed a WireGuard identity it may not have: {}",
            problems.join("; ")
        ),
        details: details.clone(),
    };
    let mut tx = state.db.begin().await?;
    db::audit::append(&mut tx, "control-plane", "node.claim_refused", details).await?;
    db::events::insert_many(&mut tx, node_id, std::slice::from_ref(&event), now).await?;
    tx.commit().await?;
    state.forwarder.send(StoredEvent { node_id: node_id.to_owned(), event, received_ms: now });
    Ok(())
}

/// Forgets a node's last refused claim (it now claims what it may).
pub fn accepted(state: &AppState, node_id: &str) {
    state.refused_claims.lock().unwrap_or_else(|e| e.into_inner()).remove(node_id);
}

/// Host addresses for a new node of `region`: one from each of its pools.
pub async fn allocate(state: &AppState, tx: &mut Tx, region: &str) -> ApiResult<Vec<String>> {
    let pools: Vec<IpNet> = state.mesh.pools_for(region).collect();
    if pools.is_empty() {
        return Ok(Vec::new());
    }
    let taken = db::nodes::taken_addresses(tx, "").await?;
    let mut out = Vec::new();
    for pool in pools {
        let address = mesh::allocate(pool, &taken).ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                format!("tunnel address pool {pool} of region {region} is exhausted (widen --wg-pool or revoke nodes)"),
            )
        })?;
        out.push(address.to_string());
    }
    Ok(out)
}

async fn node_or_404(state: &AppState, id: &str) -> ApiResult<NodeRow> {
    db::nodes::get(state.db.pool(), id)
        .await?
        .filter(|n| n.info.revoked_ms.is_none())
        .ok_or_else(|| ApiError::not_found(format!("no active node {id} (see `ringfence nodes`)")))
}

/// `POST /v1/nodes/{id}/addresses`.
pub async fn pin_addresses(
    State(state): State<Arc<AppState>>,
    _: Admin,
    PathArg(id): PathArg<String>,
    JsonBody(req): JsonBody<AddressPin>,
) -> ApiResult<Json<NodeInfo>> {
    let node = node_or_404(&state, &id).await?;
    let mut nets = Vec::new();
    for a in &req.addresses {
        match a.parse::<IpNet>() {
            Ok(n) if n.trunc() == n && n.prefix_len() > 0 => nets.push(n),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "address {a:?}: expected a CIDR without host bits, not a default route"
                )))
            }
        }
    }
    let mut tx = state.db.begin().await?;
    let taken = db::nodes::taken_addresses(&mut tx, &id).await?;
    if let Some((mine, theirs)) = mesh::overlapping(&nets, &taken) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("{mine} overlaps {theirs}, another node's tunnel address"),
        ));
    }
    let addresses: Vec<String> = nets.iter().map(IpNet::to_string).collect();
    let generation = state.db.bump_generation(&mut tx).await?;
    db::nodes::set_addresses(&mut tx, &node, &addresses, generation).await?;
    let details = json!({"node_id": id, "addresses": addresses, "previous": node.info.tunnel_addresses});
    db::audit::append(&mut tx, "admin", "node.addresses", details).await?;
    tx.commit().await.map_err(db::DbError::from)?;
    state.hub.reload().await?;
    Ok(Json(node_or_404(&state, &id).await?.info))
}

/// `POST /v1/nodes/{id}/wireguard-key`.
pub async fn rotate_key(
    State(state): State<Arc<AppState>>,
    _: Admin,
    PathArg(id): PathArg<String>,
    JsonBody(req): JsonBody<KeyRotation>,
) -> ApiResult<Json<NodeInfo>> {
    let node = node_or_404(&state, &id).await?;
    let key = req.public_key.trim().to_owned();
    if !mesh::valid_key(&key) {
        return Err(ApiError::bad_request(format!(
            "public_key {key:?}: not a WireGuard public key (32 bytes, base64)"
        )));
    }
    let mut tx = state.db.begin().await?;
    if let Some(owner) = db::nodes::key_owner(&mut tx, &key).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("public_key {key}: already bound to node {owner}"),
        ));
    }
    let previous = node.bound_key().map(str::to_owned);
    let wireguard = match node.info.wireguard.clone() {
        Some(w) => WireGuardInfo { public_key: key.clone(), ..w },
        None => WireGuardInfo {
            public_key: key.clone(),
            endpoint: None,
            allowed_ips: node.info.tunnel_addresses.clone(),
        },
    };
    let generation = state.db.bump_generation(&mut tx).await?;
    db::nodes::set_wireguard(&mut tx, &id, &wireguard, generation).await?;
    db::audit::append(
        &mut tx,
        "admin",
        "node.key_rotate",
        json!({"node_id": id, "public_key": key, "previous": previous}),
    )
    .await?;
    tx.commit().await.map_err(db::DbError::from)?;
    state.hub.reload().await?;
    tracing::info!(node = id, "WireGuard key rotated by an operator");
    Ok(Json(node_or_404(&state, &id).await?.info))
}
