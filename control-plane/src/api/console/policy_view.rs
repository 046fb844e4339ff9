//! Policies for the console: history (who applied what, when), the diff between any two
//! versions, and apply and rollback (operator role; recorded with the account as author and
//! audited like `ringfence policy apply`).

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use ringfence_proto::api::{PolicyApplied, PolicyApplyRequest, PolicyDiff, PolicyRecord, RollbackRequest};
use serde::{Deserialize, Serialize};

use super::principal::{Reader, Role, Writer};
use crate::api::auth::{JsonBody, QueryArgs};
use crate::api::error::{ApiError, ApiResult};
use crate::api::policies::{line_diff, rollback_to, store};
use crate::api::state::AppState;
use crate::db;

/// `GET /console/api/policies`.
#[derive(Serialize)]
pub struct Policies {
    /// Every version, oldest first (without the documents).
    history: Vec<PolicyRecord>,
    /// The versions in force (the newest per selector).
    in_force: Vec<u64>,
    /// Per version in force: how many active nodes acknowledged it.
    applied_on: std::collections::BTreeMap<u64, usize>,
}

/// `GET /console/api/policies`.
pub async fn list(State(state): State<Arc<AppState>>, _: Reader) -> ApiResult<Json<Policies>> {
    let history = db::policies::history(state.db.pool()).await?;
    let snapshot = state.hub.current();
    let mut in_force: Vec<u64> = snapshot.policies.iter().map(|p| p.record.version).collect();
    in_force.extend(snapshot.workload_policies.iter().map(|w| w.row.record.version));
    in_force.sort_unstable();
    let mut applied_on = std::collections::BTreeMap::new();
    for n in snapshot.active_nodes() {
        if let Some(v) = n.info.applied_policy_version {
            *applied_on.entry(v).or_default() += 1;
        }
    }
    Ok(Json(Policies { history, in_force, applied_on }))
}

/// `?from=A&to=B`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiffQuery {
    from: u64,
    to: u64,
}

async fn yaml_of(state: &AppState, version: u64) -> ApiResult<String> {
    let row = db::policies::get(state.db.pool(), version)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no policy version {version}")))?;
    Ok(row.record.policy_yaml.unwrap_or_default())
}

/// `GET /console/api/policies/diff`.
pub async fn diff(
    State(state): State<Arc<AppState>>,
    _: Reader,
    QueryArgs(q): QueryArgs<DiffQuery>,
) -> ApiResult<Json<PolicyDiff>> {
    let (old, new) = (yaml_of(&state, q.from).await?, yaml_of(&state, q.to).await?);
    let diff = line_diff(&old, &new, &format!("v{}", q.from), &format!("v{}", q.to));
    Ok(Json(PolicyDiff { from: q.from, to: q.to, diff }))
}

/// `POST /console/api/policies/apply` (the body of `POST /v1/policies`; `author` is the
/// account, whatever the body says).
pub async fn apply(
    State(state): State<Arc<AppState>>,
    Writer(p): Writer,
    JsonBody(req): JsonBody<PolicyApplyRequest>,
) -> ApiResult<Json<PolicyApplied>> {
    p.require(Role::Operator)?;
    let comment = req.comment.as_deref();
    Ok(Json(store(&state, &req.policy_yaml, &req.selector, &p.actor(), comment, None, req.strict).await?))
}

/// `POST /console/api/policies/rollback`: re-applies `version` as a new version.
pub async fn rollback(
    State(state): State<Arc<AppState>>,
    Writer(p): Writer,
    JsonBody(req): JsonBody<RollbackRequest>,
) -> ApiResult<Json<PolicyApplied>> {
    p.require(Role::Operator)?;
    Ok(Json(rollback_to(&state, req.version, &p.actor(), " from the console").await?))
}
