//! The audit chain segment of a pack and the external checkpoints that anchor it.
//!
//! The segment runs from the first record written in the period to the first signed checkpoint
//! at or after its last record (so the checkpoint's signature covers every record of it through
//! the hash links); checkpoints are read back from the sinks the control plane can read (the
//! `--checkpoint-file`, the S3 Object Lock bucket) and its state directory's copy of the newest.

use std::collections::BTreeMap;

use ringfence_proto::evidence::{AUDIT_CHECKPOINTS, AUDIT_RECORDS};
use ringfence_proto::Checkpoint;
use serde_json::json;
use sqlx::AnyPool;

use super::files::Files;
use super::sources::EvidenceSources;
use crate::db::{self, DbError};

/// S3 checkpoint objects read at most (newest first).
const S3_MAX: usize = 1000;

/// Every checkpoint the sources hold that verifies with the checkpoint key, with where each was
/// found; unreadable sources are named in `notes`.
async fn checkpoints(
    sources: &EvidenceSources,
    notes: &mut Vec<String>,
) -> BTreeMap<(u64, i64), (Checkpoint, Vec<String>)> {
    let mut texts: Vec<(String, String)> = Vec::new();
    for (name, path) in
        [("file", sources.checkpoint_file.as_ref()), ("state-dir", Some(&sources.last_checkpoint))]
    {
        let Some(path) = path else { continue };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                texts.extend(text.lines().map(|l| (format!("{name}:{}", path.display()), l.to_owned())))
            }
            Err(e) => notes.push(format!("checkpoints in {} not readable: {e}", path.display())),
        }
    }
    if let Some((s3, sink)) = &sources.s3 {
        let source = format!("s3://{}/{}", sink.location.bucket, sink.location.prefix);
        match s3.list_versions(&sink.location.bucket, &sink.location.prefix, S3_MAX).await {
            Ok(versions) => {
                for (key, version) in versions {
                    match s3.get(&sink.location.bucket, &key, Some(&version)).await {
                        Ok(body) => texts.push((source.clone(), String::from_utf8_lossy(&body).into_owned())),
                        Err(e) => notes.push(format!("{source}{key}: {e}")),
                    }
                }
            }
            Err(e) => notes.push(format!("checkpoints in {source} not readable: {e}")),
        }
    }
    let mut out: BTreeMap<(u64, i64), (Checkpoint, Vec<String>)> = BTreeMap::new();
    for (source, text) in texts.iter().filter(|(_, t)| !t.trim().is_empty()) {
        if let Ok(c) = Checkpoint::parse_verified(text, &sources.checkpoint_key) {
            let entry = out.entry((c.seq, c.time_ms)).or_insert_with(|| (c, Vec::new()));
            if !entry.1.contains(source) {
                entry.1.push(source.clone());
            }
        }
    }
    out
}

/// Adds `audit/records.jsonl`, `audit/checkpoints.jsonl` and `audit/checkpoint-sources.json`.
pub async fn add(
    pool: &AnyPool,
    sources: &EvidenceSources,
    files: &mut Files,
    notes: &mut Vec<String>,
    from_ms: i64,
    to_ms: i64,
) -> Result<(), DbError> {
    let all = checkpoints(sources, notes).await;
    let (mut records_text, mut checkpoints_text, mut found_in) = (String::new(), String::new(), Vec::new());
    match db::audit::seq_range(pool, from_ms, to_ms).await? {
        None => notes.push("no audit record was written in the period: the audit segment is empty".into()),
        Some((first, last)) => {
            let cover = all.values().map(|(c, _)| c.seq).filter(|s| *s >= last).min();
            let end = cover.unwrap_or(last);
            if cover.is_none() {
                notes.push(format!(
                    "no external checkpoint covers audit record {last} yet (the next one is signed within the checkpoint interval): export again later for a fully anchored segment"
                ));
            }
            for r in db::audit::range(pool, first, end).await? {
                records_text.push_str(&serde_json::to_string(&r).expect("records serialize"));
                records_text.push('\n');
            }
            for (c, where_) in all.values().filter(|(c, _)| c.seq + 1 >= first && c.seq <= end) {
                checkpoints_text.push_str(&serde_json::to_string(c).expect("checkpoints serialize"));
                checkpoints_text.push('\n');
                found_in.push(json!({"seq": c.seq, "time_ms": c.time_ms, "found_in": where_}));
            }
        }
    }
    files.text(AUDIT_RECORDS, records_text);
    files.text(AUDIT_CHECKPOINTS, checkpoints_text);
    files.json("audit/checkpoint-sources.json", &json!({"checkpoints": found_in}));
    Ok(())
}
