//! The append-only, hash-chained audit log (see [`ringfence_proto::audit`]).

use ringfence_proto::AuditRecord;
use serde_json::Value;
use sqlx::{AnyPool, Row};

use super::pool::{rows_per_statement, DbError, Tx};

/// Appends a record after the newest one, in `tx` (writers are serialized, so the chain cannot
/// fork).
pub async fn append(tx: &mut Tx, actor: &str, action: &str, details: Value) -> Result<AuditRecord, DbError> {
    let mut records = append_many(tx, actor, action, vec![details]).await?;
    Ok(records.pop().expect("one record"))
}

/// Appends one record per `details`, in order, in `tx`.
pub async fn append_many(
    tx: &mut Tx,
    actor: &str,
    action: &str,
    details: Vec<Value>,
) -> Result<Vec<AuditRecord>, DbError> {
    let entries = details.into_iter().map(|d| (actor.to_owned(), d)).collect();
    append_entries(tx, action, entries).await
}

/// Appends one record per `(actor, details)`, in order, in `tx`: the head is read once and the
/// records are chained to it and to each other, exactly as one append at a time would.
pub async fn append_entries(
    tx: &mut Tx,
    action: &str,
    entries: Vec<(String, Value)>,
) -> Result<Vec<AuditRecord>, DbError> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let last = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut **tx)
        .await?;
    let mut last: Option<(u64, String)> =
        last.map(|r| Ok::<_, DbError>((r.try_get::<i64, _>(0)? as u64, r.try_get(1)?))).transpose()?;
    let mut out = Vec::with_capacity(entries.len());
    let now = ringfence_proto::now_ms();
    for (actor, details) in entries {
        let prev = last.as_ref().map(|(seq, hash)| (*seq, hash.as_str()));
        let record = AuditRecord::next(prev, now, &actor, action, details);
        last = Some((record.seq, record.hash.clone()));
        out.push(record);
    }
    // One statement per many records (7 parameters each).
    for chunk in out.chunks(rows_per_statement(tx, 7)) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| {
                let p: Vec<String> = (1..=7).map(|j| format!("${}", i * 7 + j)).collect();
                format!("({})", p.join(", "))
            })
            .collect();
        let sql = format!("{INSERT} {}", values.join(", "));
        let mut query = sqlx::query(&sql);
        for r in chunk {
            query = bind_record(query, r);
        }
        query.execute(&mut **tx).await?;
    }
    Ok(out)
}

const INSERT: &str = "INSERT INTO audit_log (seq, time_ms, actor, action, details, prev_hash, hash) VALUES";

fn bind_record<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    r: &AuditRecord,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    query
        .bind(r.seq as i64)
        .bind(r.time_ms)
        .bind(r.actor.clone())
        .bind(r.action.clone())
        .bind(ringfence_proto::audit::canonical_json(&r.details))
        .bind(r.prev_hash.clone())
        .bind(r.hash.clone())
}

/// Stores a record as it is (appends compute it; restoring a backup and tests write it as is).
pub async fn insert<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(
    executor: E,
    record: &AuditRecord,
) -> Result<(), DbError> {
    let sql = format!("{INSERT} ($1, $2, $3, $4, $5, $6, $7)");
    bind_record(sqlx::query(&sql), record).execute(executor).await?;
    Ok(())
}

/// Records per page of [`page`].
pub const PAGE: i64 = 1000;

/// Up to `limit` records after `after_seq`, in seq order (to page through the log in constant
/// memory). A record whose details are not JSON is returned with the raw text as a JSON string
/// (so the chain check reports it as edited instead of failing).
pub async fn page(pool: &AnyPool, after_seq: u64, limit: i64) -> Result<Vec<AuditRecord>, DbError> {
    let rows = sqlx::query(
        "SELECT seq, time_ms, actor, action, details, prev_hash, hash FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2",
    )
    .bind(after_seq.min(i64::MAX as u64) as i64)
    .bind(limit)
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

/// The newest record's seq and hash (`None` for an empty log).
pub async fn head(pool: &AnyPool) -> Result<Option<(u64, String)>, DbError> {
    let row =
        sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetch_optional(pool).await?;
    row.map(|r| Ok((r.try_get::<i64, _>(0)? as u64, r.try_get(1)?))).transpose()
}

/// The first and last seq of the records written in `[from_ms, to_ms)` (`None`: none).
pub async fn seq_range(pool: &AnyPool, from_ms: i64, to_ms: i64) -> Result<Option<(u64, u64)>, DbError> {
    let row = sqlx::query("SELECT MIN(seq), MAX(seq) FROM audit_log WHERE time_ms >= $1 AND time_ms < $2")
        .bind(from_ms)
        .bind(to_ms)
        .fetch_one(pool)
        .await?;
    let (first, last): (Option<i64>, Option<i64>) = (row.try_get(0)?, row.try_get(1)?);
    Ok(first.zip(last).map(|(f, l)| (f as u64, l as u64)))
}

/// The records with seq in `[first, last]`, in seq order.
pub async fn range(pool: &AnyPool, first: u64, last: u64) -> Result<Vec<AuditRecord>, DbError> {
    let mut out = Vec::new();
    let mut after = first.saturating_sub(1);
    while after < last {
        let records = page(pool, after, PAGE).await?;
        let Some(end) = records.last().map(|r| r.seq) else { break };
        out.extend(records.into_iter().filter(|r| r.seq <= last));
        after = end;
    }
    Ok(out)
}
