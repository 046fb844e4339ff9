//! What the evidence pack needs over time and the node table keeps only as "now": when a node
//! stopped reporting and came back (a gap), and when its geo-IP database, applied policy or
//! agent version changed. Written by `POST /v1/report` in the report's transaction.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::{AnyPool, Row};

use super::pool::{DbError, Tx};

/// A node silent for longer than this (agents report every 30 s) was not reporting: the span is
/// recorded as a gap when it reports again.
pub const NOT_REPORTING_AFTER_MS: i64 = 120_000;

/// `gap`: `{"from_ms", "to_ms"}`: the node did not report in between.
pub const GAP: &str = "gap";
/// `geo-db`: `{"from", "to"}`: the geo-IP database version it reports changed.
pub const GEO_DB: &str = "geo-db";
/// `policy`: `{"from", "to"}`: the applied policy version changed.
pub const POLICY: &str = "policy";
/// `agent`: `{"from", "to"}`: the agent version changed.
pub const AGENT: &str = "agent";

/// One row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryRow {
    /// The node.
    pub node_id: String,
    /// When it was recorded (Unix ms).
    pub time_ms: i64,
    /// [`GAP`], [`GEO_DB`], [`POLICY`] or [`AGENT`].
    pub kind: String,
    /// Kind-specific.
    pub details: Value,
}

/// Records one row.
pub async fn record<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(
    executor: E,
    node_id: &str,
    time_ms: i64,
    kind: &str,
    details: &Value,
) -> Result<(), DbError> {
    sqlx::query("INSERT INTO node_history (node_id, time_ms, kind, details) VALUES ($1, $2, $3, $4)")
        .bind(node_id)
        .bind(time_ms)
        .bind(kind)
        .bind(details.to_string())
        .execute(executor)
        .await?;
    Ok(())
}

/// Records a gap when a node last heard from at `last_seen_ms` (or enrolled then) is heard from
/// again at `now_ms` after more than [`NOT_REPORTING_AFTER_MS`].
pub async fn heard_from(
    pool: &AnyPool,
    node_id: &str,
    last_seen_ms: i64,
    now_ms: i64,
) -> Result<(), DbError> {
    if now_ms - last_seen_ms > NOT_REPORTING_AFTER_MS {
        let details = serde_json::json!({"from_ms": last_seen_ms, "to_ms": now_ms});
        record(pool, node_id, now_ms, GAP, &details).await?;
    }
    Ok(())
}

/// Rows recorded in `[from_ms, to_ms)`, oldest first.
pub async fn between(pool: &AnyPool, from_ms: i64, to_ms: i64) -> Result<Vec<HistoryRow>, DbError> {
    let rows = sqlx::query(
        "SELECT node_id, time_ms, kind, details FROM node_history WHERE time_ms >= $1 AND time_ms < $2 \
         ORDER BY time_ms, node_id",
    )
    .bind(from_ms)
    .bind(to_ms)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let details: String = row.try_get("details")?;
            Ok(HistoryRow {
                node_id: row.try_get("node_id")?,
                time_ms: row.try_get("time_ms")?,
                kind: row.try_get("kind")?,
                details: serde_json::from_str(&details)
                    .map_err(|e| DbError::Corrupt(format!("node_history.details: {e}")))?,
            })
        })
        .collect()
}

/// Records each version a report changes against the stored node.
pub async fn record_report(
    tx: &mut Tx,
    node: &super::NodeRow,
    report: &ringfence_proto::api::NodeReport,
    now_ms: i64,
) -> Result<(), DbError> {
    let info = &node.info;
    let id = info.node_id.as_str();
    let changes = [
        (
            GEO_DB,
            info.geo_db_version.clone().map(Value::from),
            report.geo_db_version.clone().map(Value::from),
        ),
        (
            POLICY,
            info.applied_policy_version.map(Value::from),
            report.applied_policy_version.map(Value::from),
        ),
        (AGENT, info.agent_version.clone().map(Value::from), report.agent_version.clone().map(Value::from)),
    ];
    for (kind, old, new) in changes {
        if let Some(new) = new.filter(|n| Some(n) != old.as_ref()) {
            record(&mut **tx, id, now_ms, kind, &serde_json::json!({"from": old, "to": new})).await?;
        }
    }
    Ok(())
}
