//! The auditor's evidence pack (`GET /v1/evidence?from_ms=&to_ms=`): for a period, the policy
//! history with diffs and authors, the node inventory, geo-IP database versions, enforcement
//! gaps, alerts and their handling, self-test results, and the audit chain segment with its
//! external checkpoints; a manifest lists every file with its SHA-256 and the controls it
//! evidences ([`controls`]) and is signed with the evidence key (`evidence-signing.key` in the
//! state directory, used for nothing else). `ringfence evidence export` packs the files into a
//! `.tar.zst`; `ringfence evidence verify` checks it offline.

pub mod audit_segment;
pub mod controls;
pub mod fleet;
pub mod policies;

use std::collections::BTreeMap;
use std::path::PathBuf;

use ed25519_dalek::{SigningKey, VerifyingKey};
use ringfence_proto::evidence::{self as format, EvidencePack, Manifest, EVIDENCE_FORMAT};
use serde::Serialize;

use crate::db::{Db, DbError};

/// What the pack is signed with and where the audit checkpoints are read back from.
pub struct EvidenceSources {
    /// The evidence signing key.
    pub key: SigningKey,
    /// The audit checkpoint public key.
    pub checkpoint_key: VerifyingKey,
    /// The `--checkpoint-file` sink, if any.
    pub checkpoint_file: Option<PathBuf>,
    /// The S3 sink, if any (client and where).
    pub s3: Option<(ringfence_proto::s3::S3, crate::config::S3Sink)>,
    /// The state directory's copy of the newest checkpoint.
    pub last_checkpoint: PathBuf,
}

impl EvidenceSources {
    /// The sources of a server with these checkpoint sinks (an S3 sink whose credentials are
    /// missing is left out, with a warning: the checkpointer reports the same problem).
    pub fn new(
        key: SigningKey,
        checkpoint_key: &SigningKey,
        config: &crate::config::CheckpointConfig,
        state_dir: &std::path::Path,
    ) -> EvidenceSources {
        let s3 = config.s3.as_ref().and_then(|sink| {
            match ringfence_proto::s3::S3::from_env(&sink.endpoint, &sink.region) {
                Ok(client) => Some((client, sink.clone())),
                Err(e) => {
                    tracing::warn!(error = %e, "evidence packs will not include S3 checkpoints");
                    None
                }
            }
        });
        EvidenceSources {
            key,
            checkpoint_key: checkpoint_key.verifying_key(),
            checkpoint_file: config.file.clone(),
            s3,
            last_checkpoint: state_dir.join(crate::checkpoint::LAST_CHECKPOINT),
        }
    }
}

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

/// The files of a pack being built (path → text).
#[derive(Default)]
pub struct Files(pub BTreeMap<String, String>);

impl Files {
    /// Adds a JSON file (pretty, with a final newline).
    pub fn json(&mut self, path: &str, value: &impl Serialize) {
        let text = serde_json::to_string_pretty(value).expect("evidence serializes") + "\n";
        self.0.insert(path.to_owned(), text);
    }

    /// Adds a text file.
    pub fn text(&mut self, path: &str, text: String) {
        self.0.insert(path.to_owned(), text);
    }
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
