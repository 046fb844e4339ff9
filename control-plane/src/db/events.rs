//! Events from agents, each stored once per (node, id).

use ringfence_proto::api::{Event, StoredEvent};
use sqlx::{AnyPool, Row};

use super::{DbError, Tx};

/// Stores `event` unless (node, id) is stored already; true if it was new.
pub async fn insert(tx: &mut Tx, node_id: &str, event: &Event, received_ms: i64) -> Result<bool, DbError> {
    let done = sqlx::query(
        "INSERT INTO events (node_id, id, kind, severity, summary, details, time_ms, received_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (node_id, id) DO NOTHING",
    )
    .bind(node_id)
    .bind(&event.id)
    .bind(&event.kind)
    .bind(&event.severity)
    .bind(&event.summary)
    .bind(event.details.to_string())
    .bind(event.time_ms)
    .bind(received_ms)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The newest `limit` events.
pub async fn recent(pool: &AnyPool, limit: i64) -> Result<Vec<StoredEvent>, DbError> {
    let rows = sqlx::query(
        "SELECT node_id, id, kind, severity, summary, details, time_ms, received_ms FROM events \
         ORDER BY received_ms DESC, node_id, id LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let details: String = row.try_get("details")?;
            Ok(StoredEvent {
                node_id: row.try_get("node_id")?,
                event: Event {
                    id: row.try_get("id")?,
                    kind: row.try_get("kind")?,
                    time_ms: row.try_get("time_ms")?,
                    severity: row.try_get("severity")?,
                    summary: row.try_get("summary")?,
                    details: serde_json::from_str(&details)
                        .map_err(|e| DbError::Corrupt(format!("events.details: {e}")))?,
                },
                received_ms: row.try_get("received_ms")?,
            })
        })
        .collect()
}

/// How many events are stored.
pub async fn count(pool: &AnyPool) -> Result<i64, DbError> {
    Ok(sqlx::query("SELECT COUNT(*) FROM events").fetch_one(pool).await?.try_get(0)?)
}
