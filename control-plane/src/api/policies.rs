//! Policies: apply (validated with `ringfence_policy`), history, one version, diff, rollback.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use ringfence_policy::geo::GeoDb;
use ringfence_proto::api::{
    PolicyApplied, PolicyApplyRequest, PolicyDiagnostic, PolicyDiff, PolicyHistory, PolicyRecord,
    RollbackRequest, Selector,
};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use super::auth::{Admin, JsonBody, PathArg, QueryArgs};
use super::error::{ApiError, ApiResult};
use super::state::AppState;
use crate::db::{self, NewPolicy};
use crate::metrics::inc;
use crate::{heads, render};

/// Validates and compiles a policy as `ringfence policy check` does; returns it.
fn check_policy(yaml: &str) -> ApiResult<ringfence_policy::Policy> {
    let policy = ringfence_policy::parse_policy(yaml).map_err(|diagnostics| {
        let n = diagnostics.len();
        let diagnostics = diagnostics
            .into_iter()
            .map(|d| PolicyDiagnostic { line: d.line, column: d.column, message: d.message })
            .collect();
        ApiError::invalid_policy(
            format!(
                "invalid policy: {n} error{} (fix them; `ringfence policy check FILE` shows the same)",
                if n == 1 { "" } else { "s" }
            ),
            diagnostics,
        )
    })?;
    // Without a database, compile against an empty one: every kernel limit except the number
    // of geo entries, which depends on each node's database.
    let empty = GeoDb::from_networks(Vec::new(), Vec::new());
    ringfence_policy::compile(&policy, Some(&empty)).map_err(|e| {
        ApiError::invalid_policy(format!("policy does not compile for the kernel: {e}"), Vec::new())
    })?;
    Ok(policy)
}

pub use crate::diff::line_diff;

pub(super) async fn store(
    state: &AppState,
    yaml: &str,
    selector: &Selector,
    author: &str,
    comment: Option<&str>,
    rollback_of: Option<u64>,
    strict: bool,
) -> ApiResult<PolicyApplied> {
    let policy = check_policy(yaml)?;
    let name = policy.name.clone();
    let workload = policy.workload_selector.is_some();
    let conflicts = heads::workload_conflicts(&state.hub.current().workload_policies, selector, &policy);
    if !conflicts.is_empty() {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            format!(
                "workload policy \"{name}\" overlaps a workload policy in force on the same nodes; nothing stored: {}",
                conflicts.join("; ")
            ),
        ));
    }
    if strict {
        let snapshot = state.hub.current();
        if !snapshot.active_nodes().any(|n| selector.matches(&n.info.region, &n.info.labels)) {
            return Err(ApiError::new(
                axum::http::StatusCode::CONFLICT,
                format!("selector {selector} matches no enrolled node; nothing stored (check the selector, or apply without strict)"),
            ));
        }
    }
    let sha256 = hex::encode(Sha256::digest(yaml.as_bytes()));
    let mut tx = state.db.begin().await?;
    let generation = state.db.bump_generation(&mut tx).await?;
    let new = NewPolicy { name: &name, selector, yaml, sha256: &sha256, author, comment, rollback_of };
    let stored = db::policies::insert(&mut tx, &new, generation).await?;
    let version = stored.record.version;
    let same_name = workload.then_some(name.as_str());
    let previous = db::policies::previous_with_selector(&mut tx, selector, same_name, version).await?;
    let (old_yaml, old_name) = match &previous {
        Some(p) => (p.record.policy_yaml.clone().unwrap_or_default(), format!("v{}", p.record.version)),
        None => (String::new(), "(none)".to_owned()),
    };
    let details = json!({
        "version": version,
        "name": name,
        "workload_selector": policy.workload_selector.as_ref().map(|s| &s.match_labels),
        "selector": selector.to_string(),
        "author": author,
        "comment": comment,
        "rollback_of": rollback_of,
        "policy_sha256": sha256,
        "signing_key_id": ringfence_proto::key_id(&state.signing_key.verifying_key()),
        "previous_version": previous.as_ref().map(|p| p.record.version),
        "diff": line_diff(&old_yaml, yaml, &old_name, &format!("v{version}")),
    });
    let action = if rollback_of.is_some() { "policy.rollback" } else { "policy.apply" };
    db::audit::append(&mut tx, &format!("admin:{author}"), action, details).await?;
    tx.commit().await.map_err(db::DbError::from)?;
    inc(&state.metrics.policies_applied);
    state.checkpoints.now();
    state.hub.reload().await?;
    let snapshot = state.hub.current();
    let nodes = snapshot
        .active_nodes()
        .filter(|n| {
            let (region, labels) = (&n.info.region, &n.info.labels);
            let default = render::policy_for(&snapshot, region, labels);
            match workload {
                false => default.map(|p| p.record.version) == Some(version),
                // Carried by the node's bundle (a node without a default has no bundle).
                true => {
                    default.is_some()
                        && render::workload_policies_for(&snapshot, region, labels)
                            .any(|w| w.row.record.version == version)
                }
            }
        })
        .map(|n| n.info.node_id.clone())
        .collect();
    tracing::info!(version, selector = %selector, author, "policy applied");
    let mut record = stored.record;
    record.policy_yaml = None;
    Ok(PolicyApplied { policy: record, nodes })
}

/// `POST /v1/policies`.
pub async fn apply(
    State(state): State<Arc<AppState>>,
    _: Admin,
    JsonBody(req): JsonBody<PolicyApplyRequest>,
) -> ApiResult<Json<PolicyApplied>> {
    let author = req.author.as_deref().unwrap_or("admin");
    let comment = req.comment.as_deref();
    Ok(Json(store(&state, &req.policy_yaml, &req.selector, author, comment, None, req.strict).await?))
}

/// `POST /v1/policies/rollback`.
pub async fn rollback(
    State(state): State<Arc<AppState>>,
    _: Admin,
    JsonBody(req): JsonBody<RollbackRequest>,
) -> ApiResult<Json<PolicyApplied>> {
    let author = req.author.as_deref().unwrap_or("admin");
    Ok(Json(rollback_to(&state, req.version, author, "").await?))
}

/// Re-applies `version` as a new version by `author` (`how` is appended to the comment).
pub(super) async fn rollback_to(
    state: &AppState,
    version: u64,
    author: &str,
    how: &str,
) -> ApiResult<PolicyApplied> {
    let old = db::policies::get(state.db.pool(), version).await?.ok_or_else(|| {
        ApiError::not_found(format!("no policy version {version} (see `ringfence policy history`)"))
    })?;
    let yaml = old.record.policy_yaml.clone().unwrap_or_default();
    let comment = format!("rollback to version {version}{how}");
    let selector = &old.record.selector;
    store(state, &yaml, selector, author, Some(&comment), Some(version), false).await
}

/// `GET /v1/policies/history`.
pub async fn history(State(state): State<Arc<AppState>>, _: Admin) -> ApiResult<Json<PolicyHistory>> {
    Ok(Json(PolicyHistory { policies: db::policies::history(state.db.pool()).await? }))
}

/// `GET /v1/policies/{version}`.
pub async fn get_version(
    State(state): State<Arc<AppState>>,
    _: Admin,
    PathArg(version): PathArg<u64>,
) -> ApiResult<Json<PolicyRecord>> {
    let row = db::policies::get(state.db.pool(), version).await?.ok_or_else(|| {
        ApiError::not_found(format!("no policy version {version} (see `ringfence policy history`)"))
    })?;
    Ok(Json(row.record))
}

/// `?from=A&to=B`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiffQuery {
    from: u64,
    to: u64,
}

/// `GET /v1/policies/diff`.
pub async fn diff(
    State(state): State<Arc<AppState>>,
    _: Admin,
    QueryArgs(q): QueryArgs<DiffQuery>,
) -> ApiResult<Json<PolicyDiff>> {
    let mut texts = Vec::new();
    for v in [q.from, q.to] {
        let row = db::policies::get(state.db.pool(), v).await?.ok_or_else(|| {
            ApiError::not_found(format!("no policy version {v} (see `ringfence policy history`)"))
        })?;
        texts.push(row.record.policy_yaml.unwrap_or_default());
    }
    let diff = line_diff(&texts[0], &texts[1], &format!("v{}", q.from), &format!("v{}", q.to));
    Ok(Json(PolicyDiff { from: q.from, to: q.to, diff }))
}
