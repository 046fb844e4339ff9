//! The append-only, hash-chained audit log (see [`ringfence_proto::audit`]).

use ringfence_proto::AuditRecord;
use serde_json::Value;
use sqlx::{AnyPool, Row};

use super::{DbError, Tx};

/// Appends a record after the newest one, in `tx` (writers are serialized, so the chain cannot
/// fork).
pub async fn append(tx: &mut Tx, actor: &str, action: &str, details: Value) -> Result<AuditRecord, DbError> {
    let last = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut **tx)
        .await?;
    let last: Option<(i64, String)> =
        last.map(|r| Ok::<_, DbError>((r.try_get(0)?, r.try_get(1)?))).transpose()?;
    let record = AuditRecord::next(
        last.as_ref().map(|(seq, hash)| (*seq as u64, hash.as_str())),
        ringfence_proto::now_ms(),
        actor,
        action,
        details,
    );
    sqlx::query(
        "INSERT INTO audit_log (seq, time_ms, actor, action, details, prev_hash, hash) VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(record.seq as i64)
    .bind(record.time_ms)
    .bind(&record.actor)
    .bind(&record.action)
    .bind(ringfence_proto::audit::canonical_json(&record.details))
    .bind(&record.prev_hash)
    .bind(&record.hash)
    .execute(&mut **tx)
    .await?;
    Ok(record)
}

/// Every record, in seq order. A record whose details are not JSON is returned with the raw
/// text as a JSON string (so the chain check reports it as edited instead of failing).
pub async fn all(pool: &AnyPool) -> Result<Vec<AuditRecord>, DbError> {
    let rows = sqlx::query(
        "SELECT seq, time_ms, actor, action, details, prev_hash, hash FROM audit_log ORDER BY seq",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let details: String = row.try_get("details")?;
            let seq: i64 = row.try_get("seq")?;
            Ok(AuditRecord {
                seq: seq as u64,
                time_ms: row.try_get("time_ms")?,
                actor: row.try_get("actor")?,
                action: row.try_get("action")?,
                details: serde_json::from_str(&details).unwrap_or(Value::String(details)),
                prev_hash: row.try_get("prev_hash")?,
                hash: row.try_get("hash")?,
            })
        })
        .collect()
}
