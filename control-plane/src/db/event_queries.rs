//! Read-only event queries for the console: filtered, paged alerts with their acknowledgement
//! and the sending node's region, and the recent events flow charts are built from.

use serde_json::Value;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use super::pool::DbError;

/// Which events (empty strings: any).
#[derive(Clone, Debug, Default)]
pub struct AlertFilter {
    /// Event kind (`deny`, `exfiltration`, ...).
    pub kind: String,
    /// Region of the node.
    pub region: String,
    /// Node id.
    pub node: String,
    /// Workload (cgroup path under the agent's root): a prefix of `details.workload`.
    pub workload: String,
    /// Only events listed after this one (paging): its `received_ms`, node id and id; `None`:
    /// from the newest.
    pub after: Option<(i64, String, String)>,
    /// At most this many.
    pub limit: i64,
}

/// One event as the console lists it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct AlertView {
    /// Node id.
    pub node_id: String,
    /// The node's region (`None` if the node row is gone).
    pub region: Option<String>,
    /// Event id (unique per node).
    pub id: String,
    /// Kind.
    pub kind: String,
    /// Severity.
    pub severity: String,
    /// One line.
    pub summary: String,
    /// Event-specific fields.
    pub details: Value,
    /// When it happened on the node.
    pub time_ms: i64,
    /// When it was stored.
    pub received_ms: i64,
    /// Who acknowledged it.
    pub acked_by: Option<String>,
    /// When.
    pub acked_ms: Option<i64>,
}

fn details(row: &AnyRow) -> Result<Value, DbError> {
    let text: String = row.try_get("details")?;
    serde_json::from_str(&text).map_err(|e| DbError::Corrupt(format!("events.details: {e}")))
}

/// A LIKE pattern matching `"workload":"PREFIX...` in the stored (compact) details JSON.
fn workload_pattern(prefix: &str) -> String {
    let quoted = serde_json::to_string(prefix).expect("a string serializes");
    let open = &quoted[..quoted.len() - 1];
    let escaped = open.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    format!("%\"workload\":{escaped}%")
}

/// Events matching `f`, newest first. Only the filters in use are in the statement, so that
/// the database can use its indexes (a `$1 = '' OR ...` term keeps SQLite from using them).
pub async fn alerts(pool: &AnyPool, f: &AlertFilter) -> Result<Vec<AlertView>, DbError> {
    let pattern = workload_pattern(&f.workload);
    // (condition, whether the filter is in use, the value bound).
    let terms = [
        ("e.kind = ", !f.kind.is_empty(), &f.kind),
        ("n.region = ", !f.region.is_empty(), &f.region),
        ("e.node_id = ", !f.node.is_empty(), &f.node),
        ("e.details LIKE ", !f.workload.is_empty(), &pattern),
    ];
    let used: Vec<(&str, &String)> =
        terms.into_iter().filter(|t| t.1).map(|(term, _, v)| (term, v)).collect();
    // Keyset paging in the listing's order (received_ms, node_id, id, all descending: the
    // `events_listing` index read backwards): no event with the same received_ms as the last one
    // shown is skipped.
    let mut conditions: Vec<String> = vec![
        "(e.received_ms < $1 OR (e.received_ms = $1 AND (e.node_id < $2 OR (e.node_id = $2 AND e.id < $3))))"
            .into(),
    ];
    for (i, (term, _)) in used.iter().enumerate() {
        let escape = if term.starts_with("e.details") { " ESCAPE '\\'" } else { "" };
        conditions.push(format!("{term}${}{escape}", i + 4));
    }
    let sql = format!(
        "SELECT e.node_id, e.id, e.kind, e.severity, e.summary, e.details, e.time_ms, e.received_ms, \
         n.region, a.account, a.time_ms AS acked_ms \
         FROM events e LEFT JOIN nodes n ON n.id = e.node_id \
         LEFT JOIN alert_acks a ON a.node_id = e.node_id AND a.event_id = e.id \
         WHERE {} ORDER BY e.received_ms DESC, e.node_id DESC, e.id DESC LIMIT ${}",
        conditions.join(" AND "),
        used.len() + 4
    );
    let (after_ms, after_node, after_id) =
        f.after.clone().unwrap_or((i64::MAX, String::new(), String::new()));
    let mut query = sqlx::query(&sql).bind(after_ms).bind(after_node).bind(after_id);
    for (_, value) in &used {
        query = query.bind(value.as_str());
    }
    let rows = query.bind(f.limit).fetch_all(pool).await?;
    rows.iter()
        .map(|row| {
            Ok(AlertView {
                node_id: row.try_get("node_id")?,
                region: row.try_get("region")?,
                id: row.try_get("id")?,
                kind: row.try_get("kind")?,
                severity: row.try_get("severity")?,
                summary: row.try_get("summary")?,
                details: details(row)?,
                time_ms: row.try_get("time_ms")?,
                received_ms: row.try_get("received_ms")?,
                acked_by: row.try_get("account")?,
                acked_ms: row.try_get("acked_ms")?,
            })
        })
        .collect()
}

/// Whether node `node_id` sent event `id`.
pub async fn exists(pool: &AnyPool, node_id: &str, id: &str) -> Result<bool, DbError> {
    let row = sqlx::query("SELECT COUNT(*) FROM events WHERE node_id = $1 AND id = $2")
        .bind(node_id)
        .bind(id)
        .fetch_one(pool)
        .await?;
    Ok(row.try_get::<i64, _>(0)? > 0)
}

/// The fields of an event's details flow charts use (others are not parsed).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub struct FlowDetails {
    /// Destination address (verdict events).
    #[serde(default)]
    pub dst: Option<String>,
    /// Destination address (exfiltration alerts).
    #[serde(default)]
    pub destination: Option<String>,
    /// Destination country.
    #[serde(default)]
    pub country: Option<String>,
    /// Bytes sent (exfiltration alerts).
    #[serde(default)]
    pub bytes: Option<u64>,
    /// Connections an aggregated verdict event stands for.
    #[serde(default)]
    pub count: Option<u64>,
}

/// One event as flow charts use it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowEvent {
    /// The node's region.
    pub region: String,
    /// When it happened.
    pub time_ms: i64,
    /// Destination, country, bytes, count (all empty for details of another shape).
    pub details: FlowDetails,
}

/// Up to `limit` events received since `since_ms`, newest first.
pub async fn since(pool: &AnyPool, since_ms: i64, limit: i64) -> Result<Vec<FlowEvent>, DbError> {
    let rows = sqlx::query(
        "SELECT n.region, e.time_ms, e.details FROM events e LEFT JOIN nodes n ON n.id = e.node_id \
         WHERE e.received_ms >= $1 ORDER BY e.received_ms DESC LIMIT $2",
    )
    .bind(since_ms)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let region: Option<String> = row.try_get("region")?;
            let text: String = row.try_get("details")?;
            Ok(FlowEvent {
                region: region.unwrap_or_default(),
                time_ms: row.try_get("time_ms")?,
                // Details of another shape (a field of another type) chart as nothing.
                details: serde_json::from_str(&text).unwrap_or_default(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::workload_pattern;

    #[test]
    fn workload_pattern_escapes_like_wildcards_and_json() {
        assert_eq!(workload_pattern("job_1%"), "%\"workload\":\"job\\_1\\%%");
        assert_eq!(workload_pattern("a\"b"), "%\"workload\":\"a\\\\\"b%");
    }
}
