//! `GET /v1/evidence?from_ms=&to_ms=`: the signed evidence pack of a period (see
//! [`crate::evidence`]); `ringfence evidence export` writes it as a `.tar.zst`. Each export is
//! audited.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::Json;
use ringfence_proto::evidence::EvidencePack;
use ringfence_proto::Checkpoint;
use serde::Deserialize;
use serde_json::json;

use super::auth::{Admin, QueryArgs};
use super::error::{ApiError, ApiResult};
use super::state::AppState;
use crate::db;
use crate::evidence::{self, EvidenceError};

/// Longest wait for a checkpoint of the audit log's head.
const ANCHOR_WAIT: Duration = Duration::from_secs(10);

/// Asks the checkpointer for a checkpoint of the audit log's head (reason `evidence-export`) and
/// waits (at most [`ANCHOR_WAIT`]) until the state directory's copy shows it, so the pack's audit
/// segment ends at a signed checkpoint; a slow sink only leaves the tail unanchored (the pack says
/// so and verification names it).
async fn anchor_head(state: &AppState) -> ApiResult<()> {
    let Some((head, _)) = db::audit::head(state.db.pool()).await? else { return Ok(()) };
    state.checkpoints.now_for("evidence-export");
    let deadline = Instant::now() + ANCHOR_WAIT;
    let key = state.evidence.checkpoint_key;
    while Instant::now() < deadline {
        let text = std::fs::read_to_string(&state.evidence.last_checkpoint).unwrap_or_default();
        if Checkpoint::parse_verified(&text, &key).is_ok_and(|c| c.seq >= head) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::warn!(
        seq = head,
        "no checkpoint of the audit log's head within {ANCHOR_WAIT:?}; exporting anyway"
    );
    Ok(())
}

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
    if q.from_ms < q.to_ms {
        anchor_head(&state).await?;
    }
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
