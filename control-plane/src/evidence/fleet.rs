//! The fleet over the period: node inventory, geo-IP database versions, enforcement gaps,
//! alerts and their handling, denials, self-test results.

use std::collections::BTreeMap;

use ringfence_proto::api::{rfc3339_ms, StoredEvent};
use serde_json::{json, Value};
use sqlx::AnyPool;

use super::files::Files;
use crate::db::history::{HistoryRow, AGENT, GAP, GEO_DB, NOT_REPORTING_AFTER_MS, POLICY};
use crate::db::{self, DbError, NodeRow};

/// Verdict kinds (summarised in `alerts/denials.json`); every other kind is an alert.
const VERDICTS: &[&str] = &["deny", "audit-deny", "allow"];
/// Event kinds agents use for enforcement detached or degraded.
const DETACH_KINDS: &[&str] = &["detach", "detached", "enforcement-degraded", "enforcement-detached"];

/// Whether an event kind is a self-test result (signed by its node, checked on ingest).
pub fn is_selftest(kind: &str) -> bool {
    kind.contains("self-test") || kind.contains("selftest")
}

/// Adds the fleet's files; pushes what they cannot show to `notes`.
pub async fn add(
    pool: &AnyPool,
    files: &mut Files,
    notes: &mut Vec<String>,
    from_ms: i64,
    to_ms: i64,
) -> Result<(), DbError> {
    let nodes: Vec<NodeRow> = db::nodes::list(pool)
        .await?
        .into_iter()
        .filter(|n| n.info.enrolled_ms < to_ms && n.info.revoked_ms.is_none_or(|r| r >= from_ms))
        .collect();
    let history = db::history::between(pool, from_ms, to_ms).await?;
    let events = db::events::between(pool, from_ms, to_ms).await?;
    let audit = audit_between(pool, from_ms, to_ms).await?;
    let of_kind = |kinds: &[&str]| -> Vec<&HistoryRow> {
        history.iter().filter(|h| kinds.contains(&h.kind.as_str())).collect()
    };

    let lifecycle: Vec<&Value> =
        audit.iter().filter(|r| r["action"].as_str().is_some_and(|a| a.starts_with("node."))).collect();
    files.json(
        "nodes/inventory.json",
        &json!({
            "nodes": nodes.iter().map(|n| &n.info).collect::<Vec<_>>(),
            "version_changes": of_kind(&[POLICY, AGENT]),
            "lifecycle": lifecycle,
        }),
    );

    let in_force: BTreeMap<&str, Option<&str>> =
        nodes.iter().map(|n| (n.info.node_id.as_str(), n.info.geo_db_version.as_deref())).collect();
    files.json("nodes/geoip-versions.json", &json!({
        "in_force_at_export": in_force,
        "changes": of_kind(&[GEO_DB]),
        "note": "versions as agents report them (database type and build date); a change is recorded when a report differs from the stored one",
    }));

    let not_reporting: Vec<Value> = nodes
        .iter()
        .filter(|n| n.info.revoked_ms.is_none())
        .filter_map(|n| {
            let seen = n.info.last_seen_ms.unwrap_or(n.info.enrolled_ms);
            (to_ms.min(ringfence_proto::now_ms()) - seen > NOT_REPORTING_AFTER_MS).then(
                || json!({"node_id": n.info.node_id, "last_seen_ms": seen, "last_seen": rfc3339_ms(seen)}),
            )
        })
        .collect();
    let revoked: Vec<Value> = nodes
        .iter()
        .filter_map(|n| {
            n.info
                .revoked_ms
                .filter(|r| *r < to_ms)
                .map(|r| json!({"node_id": n.info.node_id, "revoked_ms": r}))
        })
        .collect();
    let detaches: Vec<&StoredEvent> =
        events.iter().filter(|e| DETACH_KINDS.contains(&e.event.kind.as_str())).collect();
    files.json("nodes/enforcement-gaps.json", &json!({
        "not_reporting_after_ms": NOT_REPORTING_AFTER_MS,
        "gaps": of_kind(&[GAP]),
        "not_reporting_at_end": not_reporting,
        "revoked": revoked,
        "detaches_reported": detaches,
        "note": "a gap is a span longer than not_reporting_after_ms in which the node made no request; pinned kernel programs keep enforcing while an agent is down, so a gap is missing telemetry, not necessarily missing enforcement",
    }));

    let alerts: Vec<&StoredEvent> = events
        .iter()
        .filter(|e| !VERDICTS.contains(&e.event.kind.as_str()) && !is_selftest(&e.event.kind))
        .collect();
    let handling: Vec<&Value> =
        audit.iter().filter(|r| r["action"].as_str().is_some_and(|a| a.starts_with("alert."))).collect();
    files.json("alerts/alerts.json", &json!({
        "alerts": alerts,
        "handling": handling,
        "note": "handling: audit records of alert actions (acknowledgements); every stored alert is also forwarded to the configured sinks (Alertmanager, webhook, syslog)",
    }));

    let mut denials: BTreeMap<String, u64> = BTreeMap::new();
    for e in events.iter().filter(|e| VERDICTS.contains(&e.event.kind.as_str())) {
        let d = &e.event.details;
        let key = format!(
            "{} {} policy={} rule={}",
            e.node_id,
            e.event.kind,
            d["policy"].as_str().unwrap_or("-"),
            d["rule"].as_str().unwrap_or("-")
        );
        *denials.entry(key).or_default() += d["count"].as_u64().unwrap_or(1).max(1);
    }
    files.json("alerts/denials.json", &json!({"counts": denials}));

    let selftests: Vec<Value> = events
        .iter()
        .filter(|e| is_selftest(&e.event.kind))
        .map(|e| serde_json::to_value(e).expect("events serialize"))
        .chain(audit.iter().filter(|r| r["action"].as_str().is_some_and(is_selftest)).cloned())
        .collect();
    let note = if selftests.is_empty() {
        notes.push(
            "selftest/results.json is empty: no exfiltration self-test result was recorded in the period"
                .into(),
        );
        "No exfiltration self-test results were recorded in this period: none was run, or this control plane does not record them yet."
    } else {
        "Exfiltration self-test results recorded in the period (events and audit records)."
    };
    files.json("selftest/results.json", &json!({"results": selftests, "note": note}));
    Ok(())
}

/// Audit records of the period, as JSON (seq order).
async fn audit_between(pool: &AnyPool, from_ms: i64, to_ms: i64) -> Result<Vec<Value>, DbError> {
    let Some((first, last)) = db::audit::seq_range(pool, from_ms, to_ms).await? else {
        return Ok(Vec::new());
    };
    Ok(db::audit::range(pool, first, last)
        .await?
        .iter()
        .filter(|r| r.time_ms >= from_ms && r.time_ms < to_ms)
        .map(|r| serde_json::to_value(r).expect("records serialize"))
        .collect())
}
