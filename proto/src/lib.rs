//! Ringfence control-plane protocol: the JSON documents agents and the control plane exchange
//! ([`api`]), signed policy bundles ([`bundle`]: Ed25519, pinned key, rollback refusal), the
//! audit log's hash chain ([`audit`]) and, with the `csr` feature, an agent's key pair and
//! certificate signing request ([`csr`]); with the `s3` feature, the S3 client that stores and
//! fetches audit checkpoints ([`s3`]); self-test results signed by their node ([`selftest`]).
//!
//! Every request body rejects unknown fields; every document carries what it needs to be
//! checked on its own.

pub mod api;
pub mod audit;
pub mod bundle;
pub mod checkpoint;
#[cfg(feature = "csr")]
pub mod csr;
pub mod evidence;
mod keys;
#[cfg(feature = "s3")]
pub mod s3;
pub mod selftest;

pub use audit::{audit_hash, verify_chain, AuditRecord, ChainError, ChainVerifier, GENESIS_HASH};
pub use bundle::{
    Bundle, BundleError, Peer, RemoteWorkloadDoc, SignedBundle, WorkloadPolicyDoc, BUNDLE_FORMAT,
};
pub use checkpoint::{Checkpoint, CheckpointError, CHECKPOINT_FORMAT};
pub use keys::{key_id, parse_public_key, public_key_b64, KeyError};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
