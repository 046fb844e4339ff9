//! Events from agents, each stored once per (node, id).

use ringfence_proto::api::{Event, StoredEvent};
use sqlx::{AnyPool, Row};

use super::pool::{rows_per_statement, DbError, Tx};

/// Stores the events of `node_id` that are not stored yet, a few statements for the whole
/// batch; the ids stored now.
pub async fn insert_many(
    tx: &mut Tx,
    node_id: &str,
    events: &[Event],
    received_ms: i64,
) -> Result<std::collections::HashSet<String>, DbError> {
    let mut stored = std::collections::HashSet::new();
    for chunk in events.chunks(rows_per_statement(tx, 8)) {
        let values: Vec<String> = (0..chunk.len())
            .map(|i| {
                let p: Vec<String> = (1..=8).map(|j| format!("${}", i * 8 + j)).collect();
                format!("({})", p.join(", "))
            })
            .collect();
        let sql = format!(
            "INSERT INTO events (node_id, id, kind, severity, summary, details, time_ms, received_ms) VALUES {} \
             ON CONFLICT (node_id, id) DO NOTHING RETURNING id",
            values.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for e in chunk {
            query = query
                .bind(node_id)
                .bind(&e.id)
                .bind(&e.kind)
                .bind(&e.severity)
                .bind(&e.summary)
                .bind(e.details.to_string())
                .bind(e.time_ms)
                .bind(received_ms);
        }
        for row in query.fetch_all(&mut **tx).await? {
            stored.insert(row.try_get::<String, _>(0)?);
        }
    }
    Ok(stored)
}

/// The newest `limit` events.
pub async fn recent(pool: &AnyPool, limit: i64) -> Result<Vec<StoredEvent>, DbError> {
    newest(pool, None, limit).await
}

fn from_row(row: &sqlx::any::AnyRow) -> Result<StoredEvent, DbError> {
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
}

/// How many events are stored.
pub async fn count(pool: &AnyPool) -> Result<i64, DbError> {
    Ok(sqlx::query("SELECT COUNT(*) FROM events").fetch_one(pool).await?.try_get(0)?)
}

/// Up to `limit` stored events, newest first (of one node, if given).
pub async fn newest(pool: &AnyPool, node_id: Option<&str>, limit: i64) -> Result<Vec<StoredEvent>, DbError> {
    let by_node = if node_id.is_some() { "WHERE node_id = $2 " } else { "" };
    let sql = format!(
        "SELECT node_id, id, kind, severity, summary, details, time_ms, received_ms FROM events \
         {by_node}ORDER BY received_ms DESC, node_id, id LIMIT $1"
    );
    let query = sqlx::query(&sql).bind(limit);
    let query = match node_id {
        Some(n) => query.bind(n),
        None => query,
    };
    query.fetch_all(pool).await?.iter().map(from_row).collect()
}

/// Events received in `[from_ms, to_ms)`, oldest first.
pub async fn between(pool: &AnyPool, from_ms: i64, to_ms: i64) -> Result<Vec<StoredEvent>, DbError> {
    sqlx::query(
        "SELECT node_id, id, kind, severity, summary, details, time_ms, received_ms FROM events \
         WHERE received_ms >= $1 AND received_ms < $2 ORDER BY received_ms, node_id, id",
    )
    .bind(from_ms)
    .bind(to_ms)
    .fetch_all(pool)
    .await?
    .iter()
    .map(from_row)
    .collect()
}
