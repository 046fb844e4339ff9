//! `GET /v1/evidence?from_ms=&to_ms=`: the signed evidence pack of a period (see
//! [`crate::evidence`]); `ringfence evidence export` writes it as a `.tar.zst`. Each export is
//! audited.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use ringfence_proto::evidence::EvidencePack;
use serde::Deserialize;
use serde_json::json;

use super::auth::{Admin, QueryArgs};
use super::error::{ApiError, ApiResult};
use super::state::AppState;
use crate::db;
use crate::evidence::{self, EvidenceError};

/// The period.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceQuery {
    from_ms: i64,
    to_ms: i64,
}

/// `GET /v1/evidence`.
pub async fn export(
    State(state): State<Arc<AppState>>,
    _: Admin,
    QueryArgs(q): QueryArgs<EvidenceQuery>,
) -> ApiResult<Json<EvidencePack>> {
    let pack =
        evidence::build(&state.db, &state.evidence, q.from_ms, q.to_ms).await.map_err(|e| match e {
            EvidenceError::Db(e) => ApiError::from(e),
            period @ EvidenceError::Period { .. } => ApiError::bad_request(period.to_string()),
        })?;
    let mut tx = state.db.begin().await?;
    let details = json!({"from_ms": q.from_ms, "to_ms": q.to_ms, "files": pack.files.len()});
    db::audit::append(&mut tx, "admin", "evidence.export", details).await?;
    tx.commit().await.map_err(db::DbError::from)?;
    Ok(Json(pack))
}
