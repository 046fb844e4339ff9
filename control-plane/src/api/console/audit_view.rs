//! The audit log for the console: pages newest first, the chain's verification status and the
//! latest external checkpoint (as the control plane last signed and sent it).

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use ringfence_proto::api::AuditVerification;
use ringfence_proto::{AuditRecord, Checkpoint};
use serde::{Deserialize, Serialize};

use super::principal::Reader;
use crate::api::audit::chain_status;
use crate::api::auth::QueryArgs;
use crate::api::error::ApiResult;
use crate::api::state::AppState;
use crate::checkpoint::LAST_CHECKPOINT;
use crate::db;

/// `?before=SEQ&limit=N`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    #[serde(default)]
    before: Option<u64>,
    #[serde(default)]
    limit: Option<u64>,
}

/// A page of records, newest first.
#[derive(Serialize)]
pub struct AuditPage {
    /// The newest record's seq (0: empty log).
    head_seq: u64,
    records: Vec<AuditRecord>,
}

/// `GET /console/api/audit`: records with seq below `before` (default: all), newest first.
pub async fn page(
    State(state): State<Arc<AppState>>,
    _: Reader,
    QueryArgs(q): QueryArgs<AuditQuery>,
) -> ApiResult<Json<AuditPage>> {
    let head_seq = db::audit::head(state.db.pool()).await?.map_or(0, |(seq, _)| seq);
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let before = q.before.unwrap_or(head_seq + 1).clamp(1, head_seq + 1);
    let after = before.saturating_sub(limit + 1);
    let mut records = db::audit::page(state.db.pool(), after, (before - 1 - after) as i64).await?;
    records.reverse();
    Ok(Json(AuditPage { head_seq, records }))
}

/// `GET /console/api/audit/status`.
#[derive(Serialize)]
pub struct AuditStatus {
    verification: AuditVerification,
    /// The last checkpoint signed (`None`: none yet, or it does not parse).
    checkpoint: Option<Checkpoint>,
    /// Whether the record it names still has the hash it signed.
    checkpoint_matches: Option<bool>,
}

/// `GET /console/api/audit/status`: recomputes the whole chain (a page at a time).
pub async fn status(State(state): State<Arc<AppState>>, _: Reader) -> ApiResult<Json<AuditStatus>> {
    let verification = chain_status(&state.db).await?;
    let checkpoint = std::fs::read_to_string(state.state_dir.join(LAST_CHECKPOINT))
        .ok()
        .and_then(|text| serde_json::from_str::<Checkpoint>(text.trim()).ok());
    let checkpoint_matches = match &checkpoint {
        Some(c) if c.seq == 0 => Some(true),
        Some(c) => {
            let records = db::audit::page(state.db.pool(), c.seq - 1, 1).await?;
            Some(records.first().is_some_and(|r| r.seq == c.seq && r.hash == c.hash))
        }
        None => None,
    };
    Ok(Json(AuditStatus { verification, checkpoint, checkpoint_matches }))
}
