//! `ringfence evidence verify pack.tar.zst [--key FILE] [--checkpoint-key FILE] [--node-ca FILE]`,
//! offline: the manifest's signature (pinned key, or the pack's own with a warning), every
//! file's hash, no file added or removed, then the audit chain segment (the same streaming check
//! as `ringfence audit verify`, resumed at the segment's first record) against its signed
//! checkpoints, and every self-test result's node signature ([`super::selftests`]: pinned node
//! CA, or the pack's).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use ed25519_dalek::VerifyingKey;
use ringfence_proto::evidence::{
    Manifest, AUDIT_CHECKPOINTS, AUDIT_RECORDS, CHECKPOINT_KEY, EVIDENCE_KEY, MANIFEST, SIGNATURE,
};
use ringfence_proto::{AuditRecord, Checkpoint};

use super::pack;
use crate::audit_ops::{compare, Check};
use crate::client::CliError;
use crate::output::time_text;

fn broken(text: String) -> CliError {
    CliError::EvidenceBroken(text)
}

/// A public key from a pinned file, or else from the pack (then `pinned` is false).
fn key(
    pinned: Option<&Path>,
    files: &BTreeMap<String, Vec<u8>>,
    in_pack: &str,
) -> Result<(VerifyingKey, bool), CliError> {
    let (text, from) = match pinned {
        Some(path) => (
            std::fs::read_to_string(path)
                .map_err(|e| CliError::Input { path: path.into(), reason: e.to_string() })?,
            path.display().to_string(),
        ),
        None => {
            let bytes =
                files.get(in_pack).ok_or_else(|| broken(format!("{in_pack}: missing from the pack")))?;
            (String::from_utf8_lossy(bytes).into_owned(), in_pack.to_owned())
        }
    };
    let key = ringfence_proto::parse_public_key(&text).map_err(|e| broken(format!("{from}: {e}")))?;
    Ok((key, pinned.is_some()))
}

/// Checks the audit segment against the checkpoints; returns a one-line summary.
fn check_audit(files: &BTreeMap<String, Vec<u8>>, checkpoint_key: &VerifyingKey) -> Result<String, CliError> {
    let text = |p: &str| String::from_utf8_lossy(files.get(p).map_or(&[][..], Vec::as_slice)).into_owned();
    let records = text(AUDIT_RECORDS);
    let mut checkpoints = Vec::new();
    for (i, line) in text(AUDIT_CHECKPOINTS).lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let c = Checkpoint::parse_verified(line, checkpoint_key)
            .map_err(|e| broken(format!("{AUDIT_CHECKPOINTS} line {}: {e}", i + 1)))?;
        checkpoints.push(c);
    }
    let Some(first_line) = records.lines().find(|l| !l.trim().is_empty()) else {
        return Ok("audit segment empty (no record in the period)".into());
    };
    let first: AuditRecord =
        serde_json::from_str(first_line).map_err(|e| broken(format!("{AUDIT_RECORDS} line 1: {e}")))?;
    let last_seq = records
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .and_then(|l| serde_json::from_str::<AuditRecord>(l).ok())
        .map(|r| r.seq);
    // The checkpoint that anchors the segment: the one of its last record.
    let anchor = checkpoints
        .iter()
        .filter(|c| Some(c.seq) == last_seq)
        .max_by_key(|c| c.time_ms)
        .cloned()
        .ok_or_else(|| broken(format!("{AUDIT_RECORDS}: no signed checkpoint in {AUDIT_CHECKPOINTS} covers its last record, so the segment is not anchored")))?;
    let mut check = Check::resumed(first.seq, &first.prev_hash, anchor.seq);
    for line in records.lines() {
        check.line(line).map_err(|e| broken(format!("{AUDIT_RECORDS}: {e}")))?;
    }
    compare(&anchor, check.count(), check.found()).map_err(|e| broken(format!("{AUDIT_RECORDS}: {e}")))?;
    // Every other checkpoint inside the segment must agree with it too.
    let by_seq: BTreeMap<u64, String> = records
        .lines()
        .filter_map(|l| serde_json::from_str::<AuditRecord>(l).ok())
        .map(|r| (r.seq, r.hash))
        .collect();
    for c in &checkpoints {
        let expected = if c.seq + 1 == first.seq { Some(&first.prev_hash) } else { by_seq.get(&c.seq) };
        if expected.is_some_and(|h| *h != c.hash) {
            return Err(broken(format!(
                "{AUDIT_RECORDS}: record {} differs from the checkpoint signed {}",
                c.seq,
                time_text(c.time_ms)
            )));
        }
    }
    Ok(format!(
        "audit records {}..={} intact, anchored by the checkpoint of record {} signed {} ({} checkpoints)",
        first.seq,
        anchor.seq,
        anchor.seq,
        time_text(anchor.time_ms),
        checkpoints.len()
    ))
}

/// What the auditor pinned (obtained separately from the pack).
pub struct Pins<'a> {
    /// The evidence public key.
    pub key: Option<&'a Path>,
    /// The audit checkpoint public key.
    pub checkpoint_key: Option<&'a Path>,
    /// The node CA (PEM).
    pub node_ca: Option<&'a Path>,
}

/// Verifies a pack.
pub fn run(path: &Path, pins: &Pins, out: &mut impl Write) -> Result<(), CliError> {
    let (pinned, checkpoint_pinned) = (pins.key, pins.checkpoint_key);
    let mut files = pack::read(path)?;
    let manifest =
        files.remove(MANIFEST).ok_or_else(|| broken(format!("{MANIFEST}: missing from the pack")))?;
    let signature =
        files.remove(SIGNATURE).ok_or_else(|| broken(format!("{SIGNATURE}: missing from the pack")))?;
    let (evidence_key, pinned) = key(pinned, &files, EVIDENCE_KEY)?;
    let m = Manifest::verify(&manifest, &String::from_utf8_lossy(&signature), &evidence_key)
        .map_err(|e| broken(e.to_string()))?;
    m.check_files(&files).map_err(|e| broken(e.to_string()))?;
    let (checkpoint_key, checkpoint_pinned) = key(checkpoint_pinned, &files, CHECKPOINT_KEY)?;
    if ringfence_proto::key_id(&checkpoint_key) != m.checkpoint_key_id {
        return Err(broken(format!(
            "{CHECKPOINT_KEY}: the checkpoint key {} is not the one the manifest names ({})",
            ringfence_proto::key_id(&checkpoint_key),
            m.checkpoint_key_id
        )));
    }
    let audit = check_audit(&files, &checkpoint_key)?;
    let node_ca = match pins.node_ca {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .map_err(|e| CliError::Input { path: p.into(), reason: e.to_string() })?,
        ),
        None => None,
    };
    let selftests = super::selftests::check(&files, node_ca.as_deref())?;
    writeln!(
        out,
        "evidence pack ok: {} files for {} .. {}, manifest signed by evidence key {}{}",
        m.files.len(),
        time_text(m.from_ms),
        time_text(m.to_ms),
        m.key_id,
        if pinned { " (pinned)" } else { "" }
    )?;
    writeln!(out, "{audit}")?;
    writeln!(out, "{selftests}")?;
    for note in &m.notes {
        writeln!(out, "note: {note}")?;
    }
    if !pinned || !checkpoint_pinned {
        eprintln!(
            "warning: {} taken from the pack itself: this proves the pack is unaltered since signing, not who signed it; pin the keys with --key/--checkpoint-key",
            match (pinned, checkpoint_pinned) {
                (false, false) => "the evidence and checkpoint keys were",
                (false, true) => "the evidence key was",
                _ => "the checkpoint key was",
            }
        );
    }
    Ok(())
}
