//! [`ControlError`]: everything that can go wrong talking to the control plane or keeping its
//! state, with the exit code and retry advice for each.
use std::path::{Path, PathBuf};

use crate::error::{EXIT_CONFIG, EXIT_UNAVAILABLE};
use crate::files::FileError;

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
    Spool(#[from] crate::spool::SpoolError),
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

impl From<FileError> for ControlError {
    fn from(e: FileError) -> ControlError {
        ControlError::Io { what: e.what, path: e.path, source: e.source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
