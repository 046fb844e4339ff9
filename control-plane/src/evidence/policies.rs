//! The policy history of a pack: every version stored before the end of the period (the ones in
//! force at its start included), each document, and a diff against its predecessor.

use std::collections::HashMap;

use serde_json::json;
use sqlx::AnyPool;

use super::files::Files;
use crate::db::{self, DbError};
use crate::diff::line_diff;

/// Adds `policies/history.json`, `policies/vN.yaml` and `policies/diffs/vA-vB.diff`.
pub async fn add(pool: &AnyPool, files: &mut Files, to_ms: i64) -> Result<(), DbError> {
    let mut history = db::policies::history(pool).await?;
    history.retain(|p| p.created_ms < to_ms);
    history.reverse(); // oldest first
    let mut previous: HashMap<(String, String), (u64, String)> = HashMap::new();
    let mut rows = Vec::new();
    for record in history {
        let Some(row) = db::policies::get(pool, record.version).await? else { continue };
        let yaml = row.record.policy_yaml.clone().unwrap_or_default();
        let key = (record.name.clone(), record.selector.to_string());
        let diff_of = previous.get(&key).map(|(v, _)| *v);
        if let Some((old_version, old_yaml)) = previous.get(&key) {
            let diff =
                line_diff(old_yaml, &yaml, &format!("v{old_version}"), &format!("v{}", record.version));
            files.text(&format!("policies/diffs/v{old_version}-v{}.diff", record.version), diff);
        }
        files.text(&format!("policies/v{}.yaml", record.version), yaml.clone());
        rows.push(json!({
            "version": record.version,
            "name": record.name,
            "selector": record.selector.to_string(),
            "applied_by": record.author,
            "applied_ms": record.created_ms,
            "applied": ringfence_proto::api::rfc3339_ms(record.created_ms),
            "comment": record.comment,
            "rollback_of": record.rollback_of,
            "sha256": record.sha256,
            "previous_version": diff_of,
        }));
        previous.insert(key, (record.version, yaml));
    }
    files.json("policies/history.json", &json!({"versions": rows}));
    Ok(())
}
