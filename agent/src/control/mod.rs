//! The agent's control-plane client.
//!
//! - [`identity`]: the node's enrollment state in `<state-dir>/control/` (key, certificate, CA,
//!   pinned bundle-signing key, `node.json`).
//! - [`enroll`]: one-time enrollment with a join token (`POST /v1/enroll`).
//! - [`client`]: [`ControlClient`], mTLS calls to the agent endpoints, each with a timeout.
//! - [`bundles`]: [`BundleStore`], verification of signed bundles (pinned key, node id, no
//!   rollback) and the durable last good bundle.
//! - [`sync`]: [`run_sync`], the long-running task: bundle long-poll, apply handshake with the
//!   agent, acknowledgements, and ([`periodic`]) certificate renewal, reports, event upload.
//!
//! The logic is plain data in, data out; the I/O (HTTP, files) is thin and every call is bounded
//! by a timeout. Everything here is `Send`: [`run_sync`] can be given to `tokio::spawn`.

pub mod bundles;
pub mod client;
pub mod enroll;
pub mod identity;
pub mod periodic;
pub mod sync;
pub mod upload;
pub mod verdicts;

use std::fs;
use std::path::{Path, PathBuf};

pub use bundles::BundleStore;
pub use client::ControlClient;
pub use enroll::enroll;
pub use identity::Identity;
pub use sync::{link, run_sync, AgentEnd, AgentLink, ApplyResult, EventQueue, ReportFn, SyncOptions};
pub use upload::{event_from_record, upload_events, Uploaded};
pub use verdicts::VerdictLane;

use crate::error::{EXIT_CONFIG, EXIT_UNAVAILABLE};

/// Everything that can go wrong talking to the control plane or keeping its state.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No enrollment state in the directory.
    #[error("not enrolled ({} has no node.json): run `ringfence-agent enroll --server URL --token T --ca FILE`", dir.display())]
    NotEnrolled {
        /// The control directory.
        dir: PathBuf,
    },
    /// Enrollment state exists already.
    #[error("already enrolled as {node_id} (in {}); to enroll again, stop the agent and remove that directory", dir.display())]
    AlreadyEnrolled {
        /// The enrolled node.
        node_id: String,
        /// The control directory.
        dir: PathBuf,
    },
    /// A bad argument or a stored file that is not what it should be.
    #[error("{0}")]
    Config(String),
    /// Reading or writing a file failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// No answer (connection refused, TLS failure, timeout).
    #[error("control plane unreachable at {url}: {message}; enforcing the last good bundle, retrying")]
    Unreachable {
        /// The server.
        url: String,
        /// Why.
        message: String,
    },
    /// Enrollment got no answer (nothing enrolled, nothing enforced from a control plane).
    #[error("cannot reach the control plane at {url}: {message}; nothing was enrolled (check --server and the network)")]
    NoEnrollment {
        /// The server.
        url: String,
        /// Why.
        message: String,
    },
    /// Over a per-node rate limit (429): retry after the delay the control plane gave.
    #[error("control plane rate-limited {what}: {message}; retrying in {}s", retry_after.as_secs())]
    RateLimited {
        /// The request.
        what: &'static str,
        /// The server's `Retry-After`.
        retry_after: std::time::Duration,
        /// The server's explanation.
        message: String,
    },
    /// The control plane refused the request (4xx): retrying the same request will not help.
    #[error("control plane refused {what} ({status}): {message}")]
    Refused {
        /// The request.
        what: &'static str,
        /// HTTP status.
        status: u16,
        /// The server's explanation.
        message: String,
    },
    /// The control plane failed (5xx) or answered nonsense: retry later.
    #[error("control plane failed {what} ({status}): {message}; retrying later")]
    Server {
        /// The request.
        what: &'static str,
        /// HTTP status (0: the body did not parse).
        status: u16,
        /// What went wrong.
        message: String,
    },
    /// A bundle that must not be applied (signature, node, rollback).
    #[error("bundle refused: {0}; keeping the last good bundle")]
    BundleRefused(#[from] ringfence_proto::BundleError),
    /// A signed bundle whose WireGuard peers are not a valid mesh (repeated keys, overlapping
    /// addresses): applying it would break the mesh or hand traffic to the wrong peer.
    #[error("bundle {version} refused: its WireGuard peers are not a valid mesh ({problems}); keeping the last good bundle")]
    BadPeers {
        /// The version.
        version: u64,
        /// Every problem.
        problems: String,
    },
    /// The same bundle version with other contents than the applied one.
    #[error("bundle refused: version {version} differs from the applied bundle of the same version; keeping the last good bundle")]
    BundleConflict {
        /// The version.
        version: u64,
    },
    /// The stored last good bundle does not verify (edited on disk, or another node's state).
    #[error("stored bundle {} refused: {reason}; ignoring it and fetching the current bundle from the control plane", path.display())]
    StoredBundle {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Key or CSR generation.
    #[error(transparent)]
    Csr(#[from] ringfence_proto::csr::CsrError),
    /// The alert spool.
    #[error(transparent)]
    Spool(#[from] crate::exfil::SpoolError),
}

impl ControlError {
    /// Process exit code: configuration problems (not enrolled, bad files, refused token) are
    /// `EXIT_CONFIG`; an unreachable or failing control plane is `EXIT_UNAVAILABLE`.
    pub fn exit_code(&self) -> i32 {
        match self {
            ControlError::NotEnrolled { .. }
            | ControlError::AlreadyEnrolled { .. }
            | ControlError::Config(_)
            | ControlError::Refused { .. }
            | ControlError::StoredBundle { .. } => EXIT_CONFIG,
            ControlError::Unreachable { .. }
            | ControlError::Server { .. }
            | ControlError::RateLimited { .. } => EXIT_UNAVAILABLE,
            _ => 1,
        }
    }

    /// Whether the same request may succeed later without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ControlError::Unreachable { .. } | ControlError::Server { .. } | ControlError::RateLimited { .. }
        )
    }

    /// How long to wait before retrying, when the control plane said (429).
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            ControlError::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    pub(crate) fn io<'a>(
        what: &'static str,
        path: &'a Path,
    ) -> impl FnOnce(std::io::Error) -> ControlError + 'a {
        move |source| ControlError::Io { what, path: path.to_path_buf(), source }
    }
}

/// [`crate::fsutil::write_atomic`] with the control module's error.
pub(crate) fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<(), ControlError> {
    crate::fsutil::write_atomic(path, data, mode).map_err(|e| ControlError::Io {
        what: e.what,
        path: e.path,
        source: e.source,
    })
}

/// Reads a file; `None` if it does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<String>, ControlError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ControlError::io("read", path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_sets_the_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.json");
        write_atomic(&path, b"one", 0o600).unwrap();
        write_atomic(&path, b"two", 0o600).unwrap();
        assert_eq!(read_optional(&path).unwrap().as_deref(), Some("two"));
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
        assert_eq!(read_optional(&dir.path().join("none")).unwrap(), None);
    }

    #[test]
    fn exit_codes_separate_configuration_from_outages() {
        let unreachable =
            ControlError::Unreachable { url: "https://cp:8443".into(), message: "refused".into() };
        assert_eq!(unreachable.exit_code(), EXIT_UNAVAILABLE);
        assert!(unreachable.is_transient());
        assert!(unreachable.to_string().contains("enforcing the last good bundle"), "{unreachable}");
        let missing = ControlError::NotEnrolled { dir: "/var/lib/ringfence/control".into() };
        assert_eq!(missing.exit_code(), EXIT_CONFIG);
        assert!(!missing.is_transient());
        assert!(missing.to_string().contains("ringfence-agent enroll --server URL --token T --ca FILE"));
    }
}
