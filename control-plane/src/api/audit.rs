//! The audit log export and check, and the metrics endpoint.

use std::sync::Arc;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::Json;
use ringfence_proto::api::AuditVerification;

use super::auth::Admin;
use super::error::ApiResult;
use super::state::AppState;
use crate::db;

/// `GET /v1/audit`: every record, one JSON object per line, in seq order, streamed a page at a
/// time (constant memory however long the log is).
pub async fn export(State(state): State<Arc<AppState>>, _: Admin) -> ApiResult<impl IntoResponse> {
    let pool = state.db.pool().clone();
    let pages = futures_util::stream::try_unfold(Some(0u64), move |after| {
        let pool = pool.clone();
        async move {
            let Some(after) = after else { return Ok::<_, db::DbError>(None) };
            let records = db::audit::page(&pool, after, db::audit::PAGE).await?;
            let Some(last) = records.last().map(|r| r.seq) else { return Ok(None) };
            let mut out = Vec::with_capacity(records.len() * 256);
            for r in &records {
                serde_json::to_writer(&mut out, r).expect("audit records serialize");
                out.push(b'\n');
            }
            let next = (records.len() as i64 == db::audit::PAGE).then_some(last);
            Ok(Some((axum::body::Bytes::from(out), next)))
        }
    });
    Ok(([("content-type", "application/x-ndjson")], axum::body::Body::from_stream(pages)))
}

/// `GET /v1/audit/verify`: recomputes the chain, a page at a time.
pub async fn verify(State(state): State<Arc<AppState>>, _: Admin) -> ApiResult<Json<AuditVerification>> {
    Ok(Json(chain_status(&state.db).await?))
}

/// Recomputes the chain, a page at a time (constant memory).
pub(super) async fn chain_status(db: &db::Db) -> Result<AuditVerification, db::DbError> {
    let mut verifier = ringfence_proto::ChainVerifier::default();
    let mut after = 0;
    loop {
        let records = db::audit::page(db.pool(), after, db::audit::PAGE).await?;
        for r in &records {
            if let Err(e) = verifier.push(r) {
                return Ok(AuditVerification {
                    ok: false,
                    records: verifier.count(),
                    first_bad_seq: Some(e.seq()),
                    error: Some(e.to_string()),
                });
            }
        }
        match records.last() {
            Some(last) if records.len() as i64 == db::audit::PAGE => after = last.seq,
            _ => break,
        }
    }
    Ok(AuditVerification { ok: true, records: verifier.count(), first_bad_seq: None, error: None })
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let text = state.metrics.render(&state.hub.current());
    ([("content-type", crate::metrics::CONTENT_TYPE)], text)
}
