//! Agent errors and the process exit codes they map to (sysexits.h).
use std::path::PathBuf;

/// Bad configuration (policy, paths, flags): nothing was touched.
pub const EXIT_CONFIG: i32 = 64;
/// The kernel cannot do what we need (no BPF, no cgroup2, verifier rejected a program).
pub const EXIT_UNAVAILABLE: i32 = 69;
/// The agent lacks privileges.
pub const EXIT_NOPERM: i32 = 77;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Every configuration problem found, reported at once.
    #[error("invalid configuration:\n{}", .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Config(Vec<String>),
    #[error("not running as root (effective uid {0}); the agent needs CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN: run it as root or from the systemd unit in deploy/")]
    NotRoot(u32),
    #[error("BPF is unavailable: {0}")]
    BpfUnavailable(String),
    /// Maps pinned by another Ringfence version whose layout differs from this agent's.
    #[error("the pinned maps under {dir} were made by another Ringfence version:\n{}\nthis agent cannot reuse them: run `ringfence-agent detach --bpffs <dir>` (enforcement stops until the agent starts again), then start this agent; the old programs stay attached until then", .problems.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    PinnedLayout { dir: PathBuf, problems: Vec<String> },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("kernel map {map}: {message}")]
    Map { map: String, message: String },
    #[error("policy: {0}")]
    Policy(String),
    /// A service the agent needs is unreachable (e.g. the control plane before the first bundle).
    #[error("unavailable: {0}")]
    Unavailable(String),
}

impl AgentError {
    pub fn exit_code(&self) -> i32 {
        match self {
            AgentError::Config(_) | AgentError::Policy(_) => EXIT_CONFIG,
            AgentError::NotRoot(_) => EXIT_NOPERM,
            AgentError::BpfUnavailable(_) | AgentError::Unavailable(_) | AgentError::PinnedLayout { .. } => {
                EXIT_UNAVAILABLE
            }
            _ => 1,
        }
    }

    pub fn map(map: &str, e: impl std::fmt::Display) -> Self {
        AgentError::Map { map: map.to_string(), message: e.to_string() }
    }

    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        AgentError::Io { what, path: path.into(), source }
    }
}
