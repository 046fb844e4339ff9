//! What the pack is signed with and where the audit checkpoints are read back from.

use std::path::PathBuf;

use ed25519_dalek::{SigningKey, VerifyingKey};

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
    /// The CA certificate that issues node certificates (PEM).
    pub node_ca_pem: String,
}

impl EvidenceSources {
    /// The sources of a server with these checkpoint sinks (an S3 sink whose credentials are
    /// missing is left out, with a warning: the checkpointer reports the same problem).
    pub fn new(
        key: SigningKey,
        checkpoint_key: &SigningKey,
        config: &crate::config::CheckpointConfig,
        state_dir: &std::path::Path,
        node_ca_pem: String,
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
            node_ca_pem,
        }
    }
}
