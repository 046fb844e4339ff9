//! The auditor's evidence pack (`GET /v1/evidence?from_ms=&to_ms=`): for a period, the policy
//! history with diffs and authors, the node inventory, geo-IP database versions, enforcement
//! gaps, alerts and their handling, self-test results (each signed by its node, with the node
//! CA that checks the signatures), and the audit chain segment with its
//! external checkpoints; a manifest lists every file with its SHA-256 and the controls it
//! evidences ([`controls`]) and is signed with the evidence key (`evidence-signing.key` in the
//! state directory, used for nothing else). `ringfence evidence export` packs the files into a
//! `.tar.zst`; `ringfence evidence verify` checks it offline.

pub mod audit_segment;
pub mod controls;
mod files;
pub mod fleet;
pub mod policies;
mod sources;

pub use files::Files;
pub use sources::EvidenceSources;

use ringfence_proto::evidence::{self as format, EvidencePack, Manifest, EVIDENCE_FORMAT};

use crate::db::{Db, DbError};

/// Why a pack could not be made.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// Reading the database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The period is empty or reversed.
    #[error("the period is empty: from {from_ms} must be before to {to_ms}")]
    Period {
        /// From.
        from_ms: i64,
        /// To.
        to_ms: i64,
    },
}

/// Builds the signed pack of `[from_ms, to_ms)`.
pub async fn build(
    db: &Db,
    sources: &EvidenceSources,
    from_ms: i64,
    to_ms: i64,
) -> Result<EvidencePack, EvidenceError> {
    if from_ms >= to_ms {
        return Err(EvidenceError::Period { from_ms, to_ms });
    }
    let mut files = Files::default();
    let mut notes = Vec::new();
    policies::add(db.pool(), &mut files, to_ms).await?;
    fleet::add(db.pool(), &mut files, &mut notes, from_ms, to_ms).await?;
    audit_segment::add(db.pool(), sources, &mut files, &mut notes, from_ms, to_ms).await?;
    let checkpoint_pub = ringfence_proto::public_key_b64(&sources.checkpoint_key);
    files.text(format::CHECKPOINT_KEY, format!("{checkpoint_pub}\n"));
    let evidence_pub = ringfence_proto::public_key_b64(&sources.key.verifying_key());
    files.text(format::EVIDENCE_KEY, format!("{evidence_pub}\n"));
    files.text(format::NODE_CA, sources.node_ca_pem.clone());
    files.text("README.txt", controls::README.to_owned());
    let (listed, control_map) = Manifest::describe(&files.0, controls::describe);
    let manifest = Manifest {
        format: EVIDENCE_FORMAT.into(),
        generated_ms: ringfence_proto::now_ms(),
        from_ms,
        to_ms,
        key_id: ringfence_proto::key_id(&sources.key.verifying_key()),
        checkpoint_key_id: ringfence_proto::key_id(&sources.checkpoint_key),
        files: listed,
        controls: control_map,
        notes,
    };
    let (text, signature) = manifest.sign(&sources.key);
    files.text(format::MANIFEST, text);
    files.text(format::SIGNATURE, format!("{signature}\n"));
    Ok(EvidencePack { files: files.0 })
}
