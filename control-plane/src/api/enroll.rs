//! Join tokens, enrollment and certificate renewal.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::Json;
use ringfence_proto::api::{
    EnrollRequest, EnrollResponse, RenewRequest, RenewResponse, TokenRequest, TokenResponse,
};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::auth::{Admin, JsonBody, Node, PeerAddr};
use super::error::{ApiError, ApiResult};
use super::state::AppState;
use crate::db::{self, TokenState};
use crate::mesh::Binding;
use crate::metrics::inc;

/// Default join token lifetime.
const DEFAULT_TOKEN_TTL: u64 = 3600;
/// Longest join token lifetime.
const MAX_TOKEN_TTL: u64 = 7 * 86400;

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `POST /v1/tokens`.
pub async fn create_token(
    State(state): State<Arc<AppState>>,
    _: Admin,
    JsonBody(req): JsonBody<TokenRequest>,
) -> ApiResult<Json<TokenResponse>> {
    let mut problems = Vec::new();
    if !valid_name(&req.region) {
        problems.push(format!("region {:?}: expected 1-63 letters, digits, '-', '_' or '.'", req.region));
    }
    for (k, v) in &req.labels {
        if !valid_name(k) || !valid_name(v) || k == "region" {
            problems.push(format!("label {k}={v}: keys and values are 1-63 letters, digits, '-', '_' or '.' (and the key is not `region`)"));
        }
    }
    let ttl = req.ttl_seconds.unwrap_or(DEFAULT_TOKEN_TTL);
    if ttl == 0 || ttl > MAX_TOKEN_TTL {
        problems.push(format!("ttl_seconds {ttl}: expected 1 to {MAX_TOKEN_TTL}"));
    }
    if !problems.is_empty() {
        return Err(ApiError::bad_request(problems.join("; ")));
    }
    let token = format!("rfj_{}", hex::encode(rand::random::<[u8; 24]>()));
    let hash = token_hash(&token);
    let expires_ms = ringfence_proto::now_ms() + (ttl as i64) * 1000;
    let mut tx = state.db.begin().await?;
    db::tokens::insert(&mut tx, &hash, &req.region, &req.labels, expires_ms).await?;
    let details =
        json!({"token": &hash[..12], "region": req.region, "labels": req.labels, "expires_ms": expires_ms});
    db::audit::append(&mut tx, "admin", "token.create", details).await?;
    tx.commit().await.map_err(db::DbError::from)?;
    Ok(Json(TokenResponse { token, region: req.region, labels: req.labels, expires_ms }))
}

/// `POST /v1/enroll`.
pub async fn enroll(
    State(state): State<Arc<AppState>>,
    PeerAddr(source): PeerAddr,
    JsonBody(req): JsonBody<EnrollRequest>,
) -> ApiResult<Json<EnrollResponse>> {
    let hash = token_hash(&req.token);
    let now = ringfence_proto::now_ms();
    let mut tx = state.db.begin().await?;
    let token = db::tokens::get(&mut tx, &hash).await?;
    let refused = |why: &str| {
        inc(&state.metrics.enrollments_refused);
        tracing::warn!(token = &hash[..12], why, "enrollment refused");
        ApiError::forbidden(format!(
            "{why}; ask an operator for a new one (`ringfence token create --region R`)"
        ))
    };
    let token = match token.as_ref().map(|t| (t, t.state(now))) {
        None => return Err(refused("unknown join token")),
        Some((_, TokenState::Used)) => return Err(refused("join token already used (tokens are one-time)")),
        Some((_, TokenState::Expired)) => return Err(refused("join token expired")),
        Some((t, _)) => t.clone(),
    };
    let node_id = format!("n-{}", hex::encode(rand::random::<[u8; 8]>()));
    let (certificate_pem, not_after_ms) = state
        .ca
        .sign_node_csr(&req.csr_pem, &node_id, state.cert_ttl)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if !db::tokens::consume(&mut tx, &hash, &node_id, now).await? {
        return Err(refused("join token already used (tokens are one-time)"));
    }
    let tunnel_addresses = super::mesh::allocate(&state, &mut tx, &token.region).await?;
    let wireguard = match &req.wireguard {
        None => None,
        Some(claim) => {
            let binding = Binding {
                region: &token.region,
                key: None,
                addresses: &tunnel_addresses,
                source: source.ip(),
            };
            match super::mesh::check(&state, &mut tx, &node_id, binding, claim).await? {
                Ok(accepted) => Some(accepted),
                Err(problems) => {
                    drop(tx);
                    inc(&state.metrics.enrollments_refused);
                    let actor = format!("token:{}", &hash[..12]);
                    return Err(super::mesh::refuse(&state, &actor, source.ip(), claim, problems).await);
                }
            }
        }
    };
    let generation = state.db.bump_generation(&mut tx).await?;
    let new = db::nodes::NewNode {
        id: &node_id,
        region: &token.region,
        labels: &token.labels,
        hostname: req.hostname.as_deref(),
        agent_version: req.agent_version.as_deref(),
        wireguard: &wireguard,
        tunnel_addresses: &tunnel_addresses,
        cert_not_after_ms: not_after_ms,
    };
    db::nodes::insert(&mut tx, &new, generation).await?;
    let actor = format!("token:{}", &hash[..12]);
    db::audit::append(&mut tx, &actor, "token.use", json!({"token": &hash[..12], "node_id": node_id}))
        .await?;
    let details = json!({
        "node_id": node_id, "region": token.region, "labels": token.labels, "hostname": req.hostname,
        "cert_not_after_ms": not_after_ms, "tunnel_addresses": tunnel_addresses, "wireguard": wireguard,
    });
    db::audit::append(&mut tx, &actor, "node.enroll", details).await?;
    tx.commit().await.map_err(db::DbError::from)?;
    inc(&state.metrics.enrollments);
    state.hub.reload().await?;
    tracing::info!(node = node_id, region = token.region, "node enrolled");
    let key = state.signing_key.verifying_key();
    Ok(Json(EnrollResponse {
        node_id,
        region: token.region,
        labels: token.labels,
        certificate_pem,
        not_after_ms,
        ca_pem: state.ca.pem.clone(),
        bundle_signing_key: ringfence_proto::public_key_b64(&key),
        bundle_signing_key_id: ringfence_proto::key_id(&key),
        tunnel_addresses,
    }))
}

/// `POST /v1/renew`.
pub async fn renew(
    State(state): State<Arc<AppState>>,
    Node(node): Node,
    JsonBody(req): JsonBody<RenewRequest>,
) -> ApiResult<Json<RenewResponse>> {
    let id = &node.info.node_id;
    let ttl: Duration = state.cert_ttl;
    let (certificate_pem, not_after_ms) =
        state.ca.sign_node_csr(&req.csr_pem, id, ttl).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let mut tx = state.db.begin().await?;
    db::nodes::set_cert_expiry(&mut tx, id, not_after_ms).await?;
    let actor = format!("node:{id}");
    db::audit::append(
        &mut tx,
        &actor,
        "node.renew",
        json!({"node_id": id, "cert_not_after_ms": not_after_ms}),
    )
    .await?;
    tx.commit().await.map_err(db::DbError::from)?;
    Ok(Json(RenewResponse { certificate_pem, not_after_ms }))
}
