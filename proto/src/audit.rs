//! The audit log's hash chain: `hash = SHA-256(prev_hash || canonical record bytes)`, hex.
//!
//! The canonical bytes of a record are the compact JSON array
//! `[seq, time_ms, actor, action, details]` with every object's keys sorted, so the hash does not
//! depend on how a database or a JSON library orders keys. The first record (seq 1) links to
//! [`GENESIS_HASH`]. [`verify_chain`] recomputes the chain and names the first record that was
//! edited, or where records were deleted.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// `prev_hash` of the first record: 64 zeros.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit log entry, as stored and exported (one JSON line each by `GET /v1/audit`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// 1, 2, 3, ... with no gaps.
    pub seq: u64,
    /// When (Unix milliseconds).
    pub time_ms: i64,
    /// Who: `admin`, `node:<id>`, `token:<prefix>`, `control-plane`.
    pub actor: String,
    /// What, e.g. `token.create`, `node.enroll`, `policy.apply`, `bundle.ack`, `alert`.
    pub action: String,
    /// Action-specific details.
    pub details: Value,
    /// The previous record's hash ([`GENESIS_HASH`] for seq 1).
    pub prev_hash: String,
    /// [`audit_hash`] of this record.
    pub hash: String,
}

/// Where the chain breaks.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChainError {
    /// Records are missing before `found` (deleted).
    #[error("audit record {expected} is missing (next present is {found}): records were deleted")]
    Gap {
        /// The seq that should come next.
        expected: u64,
        /// The seq that came instead.
        found: u64,
    },
    /// The record does not link to its predecessor: the predecessor was edited and rehashed,
    /// or records were replaced.
    #[error("audit record {seq} does not link to record {}: a preceding record was edited or replaced", seq - 1)]
    BrokenLink {
        /// The first record whose `prev_hash` is wrong.
        seq: u64,
    },
    /// The record's content does not match its hash: it was edited.
    #[error("audit record {seq} was edited (its hash does not match its content)")]
    Edited {
        /// The edited record.
        seq: u64,
    },
}

impl ChainError {
    /// The seq of the first bad record.
    pub fn seq(&self) -> u64 {
        match self {
            ChainError::Gap { expected, .. } => *expected,
            ChainError::BrokenLink { seq } | ChainError::Edited { seq } => *seq,
        }
    }
}

/// Appends `value` as JSON with object keys sorted, recursively.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The canonical JSON text of `value` (keys sorted, compact).
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

/// The hash of a record with these fields, linked to `prev_hash` (hex).
pub fn audit_hash(
    prev_hash: &str,
    seq: u64,
    time_ms: i64,
    actor: &str,
    action: &str,
    details: &Value,
) -> String {
    let record = Value::Array(vec![seq.into(), time_ms.into(), actor.into(), action.into(), details.clone()]);
    let mut hasher = Sha256::new();
    // A malformed prev_hash hashes as its text: it cannot match a recomputed chain anyway.
    match hex::decode(prev_hash) {
        Ok(bytes) => hasher.update(bytes),
        Err(_) => hasher.update(prev_hash.as_bytes()),
    }
    hasher.update(canonical_json(&record).as_bytes());
    hex::encode(hasher.finalize())
}

impl AuditRecord {
    /// A new record after `prev` (seq and link computed), hashed.
    pub fn next(prev: Option<(u64, &str)>, time_ms: i64, actor: &str, action: &str, details: Value) -> Self {
        let (seq, prev_hash) = match prev {
            Some((seq, hash)) => (seq + 1, hash.to_owned()),
            None => (1, GENESIS_HASH.to_owned()),
        };
        let hash = audit_hash(&prev_hash, seq, time_ms, actor, action, &details);
        AuditRecord { seq, time_ms, actor: actor.into(), action: action.into(), details, prev_hash, hash }
    }

    /// Recomputes this record's hash from its content and `prev_hash`.
    pub fn recompute(&self) -> String {
        audit_hash(&self.prev_hash, self.seq, self.time_ms, &self.actor, &self.action, &self.details)
    }
}

/// Checks a chain one record at a time, in constant memory (records in seq order).
#[derive(Clone, Debug)]
pub struct ChainVerifier {
    next_seq: u64,
    prev_hash: String,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        ChainVerifier { next_seq: 1, prev_hash: GENESIS_HASH.to_owned() }
    }
}

impl ChainVerifier {
    /// A verifier of a chain segment that starts at record `next_seq`, linked to `prev_hash`
    /// (the segment's first record's own `prev_hash`: what anchors it is a signed checkpoint).
    pub fn resume(next_seq: u64, prev_hash: &str) -> Self {
        ChainVerifier { next_seq, prev_hash: prev_hash.to_owned() }
    }

    /// Checks the next record.
    pub fn push(&mut self, record: &AuditRecord) -> Result<(), ChainError> {
        if record.seq != self.next_seq {
            return Err(ChainError::Gap { expected: self.next_seq, found: record.seq });
        }
        if record.prev_hash != self.prev_hash {
            return Err(ChainError::BrokenLink { seq: record.seq });
        }
        if record.recompute() != record.hash {
            return Err(ChainError::Edited { seq: record.seq });
        }
        self.prev_hash.clone_from(&record.hash);
        self.next_seq += 1;
        Ok(())
    }

    /// Records checked (from seq 1: a resumed verifier counts the records before it too).
    pub fn count(&self) -> u64 {
        self.next_seq - 1
    }

    /// The hash of the last record checked ([`GENESIS_HASH`] before any).
    pub fn head_hash(&self) -> &str {
        &self.prev_hash
    }
}

/// Checks records given in seq order; returns how many were checked, or the first break.
pub fn verify_chain<'a>(records: impl IntoIterator<Item = &'a AuditRecord>) -> Result<u64, ChainError> {
    let mut verifier = ChainVerifier::default();
    for record in records {
        verifier.push(record)?;
    }
    Ok(verifier.count())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chain(n: u64) -> Vec<AuditRecord> {
        let mut out: Vec<AuditRecord> = Vec::new();
        for i in 0..n {
            let prev = out.last().map(|r| (r.seq, r.hash.as_str()));
            let details = json!({"z": i, "a": {"y": [1, 2], "b": "x"}});
            out.push(AuditRecord::next(prev, 1000 + i as i64, "admin", "policy.apply", details));
        }
        out
    }

    #[test]
    fn intact_chain_verifies() {
        let records = chain(5);
        assert_eq!(verify_chain(&records), Ok(5));
        assert_eq!(records[0].prev_hash, GENESIS_HASH);
        assert_eq!(records[1].prev_hash, records[0].hash);
        assert_eq!(verify_chain(&[]), Ok(0));
    }

    #[test]
    fn key_order_does_not_change_the_hash() {
        let a = audit_hash(GENESIS_HASH, 1, 5, "x", "y", &json!({"a": 1, "b": {"d": 2, "c": 3}}));
        let parsed: Value = serde_json::from_str(r#"{"b": {"c": 3, "d": 2}, "a": 1}"#).unwrap();
        assert_eq!(a, audit_hash(GENESIS_HASH, 1, 5, "x", "y", &parsed));
        assert_ne!(a, audit_hash(GENESIS_HASH, 1, 5, "x", "y", &json!({"a": 2, "b": {"d": 2, "c": 3}})));
    }

    #[test]
    fn edited_record_caught() {
        let mut records = chain(5);
        records[2].details = json!({"z": 99});
        assert_eq!(verify_chain(&records), Err(ChainError::Edited { seq: 3 }));
        // Rehashing the edited record moves the break to the next link.
        records[2].hash = records[2].recompute();
        assert_eq!(verify_chain(&records), Err(ChainError::BrokenLink { seq: 4 }));
        let mut records = chain(3);
        records[1].actor = "someone-else".into();
        assert_eq!(verify_chain(&records).unwrap_err().seq(), 2);
    }

    #[test]
    fn deleted_record_caught() {
        let mut records = chain(5);
        records.remove(1);
        assert_eq!(verify_chain(&records), Err(ChainError::Gap { expected: 2, found: 3 }));
        let mut records = chain(3);
        records.remove(0);
        assert_eq!(verify_chain(&records), Err(ChainError::Gap { expected: 1, found: 2 }));
        // Deleted and renumbered: the link breaks.
        let mut records = chain(4);
        records.remove(1);
        for r in records.iter_mut().skip(1) {
            r.seq -= 1;
        }
        assert_eq!(verify_chain(&records), Err(ChainError::BrokenLink { seq: 2 }));
    }
}
