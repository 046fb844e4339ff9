//! Signed checkpoints of the audit chain's head: the control plane signs (Ed25519, a key used
//! for nothing else) the sequence number and hash of its newest audit record, and sends the
//! checkpoint to a store the database's writers cannot change (append-only file, syslog,
//! webhook, S3 Object Lock). A log checked against a checkpoint proves its tail: records
//! deleted after it, a chain rewritten (rehashed) before it, or a database rolled back to an
//! older state no longer match.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::keys::key_id;

/// The `format` of checkpoints.
pub const CHECKPOINT_FORMAT: &str = "ringfence.dev/audit-checkpoint/v1";

/// One signed checkpoint (one JSON object, one line in a file sink).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    /// Always [`CHECKPOINT_FORMAT`].
    pub format: String,
    /// The newest audit record's seq (0: empty log).
    pub seq: u64,
    /// Its hash ([`crate::GENESIS_HASH`] for an empty log).
    pub hash: String,
    /// When it was signed (Unix ms).
    pub time_ms: i64,
    /// Why: `interval` or `policy-change` (or `start`).
    pub reason: String,
    /// [`crate::key_id`] of the checkpoint key.
    pub key_id: String,
    /// Ed25519 signature (base64) of [`Checkpoint::signed_bytes`].
    pub signature: String,
}

/// Why a checkpoint was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CheckpointError {
    /// Not a checkpoint.
    #[error("not an audit checkpoint: {0}")]
    Malformed(String),
    /// Signed by another key.
    #[error("checkpoint signed by key {got}, not by the pinned checkpoint key {expected}")]
    WrongKey {
        /// The pinned key's id.
        expected: String,
        /// What it names.
        got: String,
    },
    /// The signature does not verify.
    #[error("checkpoint signature does not verify (forged or edited)")]
    BadSignature,
}

impl Checkpoint {
    /// The bytes the signature covers.
    pub fn signed_bytes(format: &str, seq: u64, hash: &str, time_ms: i64, reason: &str) -> Vec<u8> {
        format!("{format}\n{seq}\n{hash}\n{time_ms}\n{reason}").into_bytes()
    }

    /// Signs the head `(seq, hash)`.
    pub fn sign(seq: u64, hash: &str, time_ms: i64, reason: &str, key: &SigningKey) -> Checkpoint {
        let signature = key.sign(&Self::signed_bytes(CHECKPOINT_FORMAT, seq, hash, time_ms, reason));
        Checkpoint {
            format: CHECKPOINT_FORMAT.into(),
            seq,
            hash: hash.into(),
            time_ms,
            reason: reason.into(),
            key_id: key_id(&key.verifying_key()),
            signature: STANDARD.encode(signature.to_bytes()),
        }
    }

    /// Parses one checkpoint and checks its signature against the pinned key.
    pub fn parse_verified(text: &str, pinned: &VerifyingKey) -> Result<Checkpoint, CheckpointError> {
        let c: Checkpoint =
            serde_json::from_str(text.trim()).map_err(|e| CheckpointError::Malformed(e.to_string()))?;
        if c.format != CHECKPOINT_FORMAT {
            return Err(CheckpointError::Malformed(format!("format {:?}", c.format)));
        }
        let expected = key_id(pinned);
        if c.key_id != expected {
            return Err(CheckpointError::WrongKey { expected, got: c.key_id });
        }
        let bytes = STANDARD.decode(c.signature.trim()).map_err(|_| CheckpointError::BadSignature)?;
        let signature = Signature::from_slice(&bytes).map_err(|_| CheckpointError::BadSignature)?;
        let signed = Self::signed_bytes(&c.format, c.seq, &c.hash, c.time_ms, &c.reason);
        pinned.verify(&signed, &signature).map_err(|_| CheckpointError::BadSignature)?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_checkpoints_verify_and_edits_do_not() {
        let key = SigningKey::from_bytes(&[9; 32]);
        let c = Checkpoint::sign(42, &"ab".repeat(32), 1_700_000_000_000, "interval", &key);
        let text = serde_json::to_string(&c).unwrap();
        assert_eq!(Checkpoint::parse_verified(&text, &key.verifying_key()), Ok(c.clone()));
        let edited = text.replace("\"seq\":42", "\"seq\":41");
        assert_eq!(
            Checkpoint::parse_verified(&edited, &key.verifying_key()),
            Err(CheckpointError::BadSignature)
        );
        let other = SigningKey::from_bytes(&[8; 32]);
        assert!(matches!(
            Checkpoint::parse_verified(&text, &other.verifying_key()),
            Err(CheckpointError::WrongKey { .. })
        ));
        assert!(matches!(
            Checkpoint::parse_verified("{}", &key.verifying_key()),
            Err(CheckpointError::Malformed(_))
        ));
    }
}
