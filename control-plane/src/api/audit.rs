//! The audit log export and check, and the metrics endpoint.

use std::sync::Arc;

use axum::extract::State;
use axum::response::IntoResponse;
use axum::Json;
use ringfence_proto::api::AuditVerification;

use super::auth::Admin;
use super::error::ApiResult;
use super::AppState;
use crate::db;

/// `GET /v1/audit`: every record, one JSON object per line, in seq order.
pub async fn export(State(state): State<Arc<AppState>>, _: Admin) -> ApiResult<impl IntoResponse> {
    let records = db::audit::all(state.db.pool()).await?;
    let mut out = String::new();
    for r in &records {
        out.push_str(&serde_json::to_string(r).expect("audit records serialize"));
        out.push('\n');
    }
    Ok(([("content-type", "application/x-ndjson")], out))
}

/// `GET /v1/audit/verify`: recomputes the chain.
pub async fn verify(State(state): State<Arc<AppState>>, _: Admin) -> ApiResult<Json<AuditVerification>> {
    let records = db::audit::all(state.db.pool()).await?;
    Ok(Json(verification(&records)))
}

/// The verdict on a list of records.
pub fn verification(records: &[ringfence_proto::AuditRecord]) -> AuditVerification {
    match ringfence_proto::verify_chain(records) {
        Ok(n) => AuditVerification { ok: true, records: n, first_bad_seq: None, error: None },
        Err(e) => AuditVerification {
            ok: false,
            records: e.seq().saturating_sub(1),
            first_bad_seq: Some(e.seq()),
            error: Some(e.to_string()),
        },
    }
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    let text = state.metrics.render(&state.hub.current());
    ([("content-type", "text/plain; version=0.0.4")], text)
}
