//! Results of the `lab-probe` binary and how to locate it.

use std::path::PathBuf;
use std::process::Output;

use serde::{Deserialize, Serialize};

/// Environment variable overriding the `lab-probe` binary location.
pub const PROBE_ENV: &str = "RINGFENCE_LAB_PROBE";

/// Locates the `lab-probe` binary.
///
/// Order: `$RINGFENCE_LAB_PROBE`; then `lab-probe` next to the current
/// executable; then in its parent directory (integration tests live in
/// `target/<profile>/deps/`, the binary in `target/<profile>/`). Cargo builds
/// the crate's bins before running its integration tests. Panics with a hint
/// when not found.
pub fn probe_bin() -> PathBuf {
    if let Some(p) = std::env::var_os(PROBE_ENV) {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "${PROBE_ENV} points to {} which is not a file", p.display());
        return p;
    }
    let exe = std::env::current_exe().expect("current_exe() for locating lab-probe");
    let mut tried = Vec::new();
    let mut dir = exe.parent();
    for _ in 0..2 {
        let Some(d) = dir else { break };
        let cand = d.join("lab-probe");
        if cand.is_file() {
            return cand;
        }
        tried.push(cand);
        dir = d.parent();
    }
    panic!(
        "lab-probe binary not found (tried {tried:?}); run `cargo build -p ringfence-tests --bins` \
         or set ${PROBE_ENV}"
    );
}

/// Outcome of one `lab-probe tcp|udp` run (its JSON line plus process info).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// The exchange completed (reply received).
    pub ok: bool,
    /// Reply text on success (`"pong 4"` for TCP, `"pong"` for UDP).
    #[serde(default)]
    pub reply: Option<String>,
    /// errno of the failing call (1 = EPERM: denied by a cgroup hook).
    #[serde(default)]
    pub errno: Option<i32>,
    /// Symbolic errno name (`"EPERM"`, `"ECONNREFUSED"`, `"ETIMEDOUT"`…).
    #[serde(default)]
    pub error: Option<String>,
    /// Failing step: `socket`, `bind`, `connect`, `sendto`, `send`, `recv`.
    #[serde(default)]
    pub stage: Option<String>,
    /// Process exit code: 0 ok, 1 EPERM at connect/sendto, 2 other error.
    #[serde(skip)]
    pub exit_code: Option<i32>,
    /// The probe's stderr (diagnostics).
    #[serde(skip)]
    pub stderr: String,
}

impl ProbeResult {
    /// Parses the probe's output; panics with the raw output if it is not
    /// one JSON line of the expected shape.
    pub fn from_output(what: &str, out: &Output) -> ProbeResult {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let line = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
        let mut r: ProbeResult = serde_json::from_str(line).unwrap_or_else(|e| {
            panic!(
                "{what}: bad lab-probe output ({e}); status {}\nstdout: {stdout}\nstderr: {stderr}",
                out.status
            )
        });
        r.exit_code = out.status.code();
        r.stderr = stderr;
        r
    }

    /// True when the probe was refused with EPERM (a cgroup hook denial).
    pub fn is_eperm(&self) -> bool {
        !self.ok && self.errno == Some(libc::EPERM)
    }

    /// Panics (naming `what`) unless the exchange succeeded.
    #[track_caller]
    pub fn assert_ok(&self, what: &str) -> &Self {
        assert!(self.ok, "{what}: expected success, got {self:?}");
        self
    }

    /// Panics (naming `what`) unless the probe failed with EPERM.
    #[track_caller]
    pub fn assert_eperm(&self, what: &str) -> &Self {
        assert!(self.is_eperm(), "{what}: expected EPERM, got {self:?}");
        self
    }
}

/// Per-target counters of `lab-probe loop`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetStats {
    /// The target as given, e.g. `tcp:198.51.100.10:443:allow`.
    pub target: String,
    /// `tcp`, `udp` (unconnected sendto) or `udpc` (connected UDP).
    pub proto: String,
    /// Destination address literal.
    pub addr: String,
    /// Destination port.
    pub port: u16,
    /// `allow` (expects success) or `deny` (expects EPERM).
    pub expect: String,
    /// Attempts made.
    pub attempts: u64,
    /// Successful exchanges.
    pub ok: u64,
    /// Attempts refused with EPERM.
    pub eperm: u64,
    /// Attempts failing with any other error.
    pub other_err: u64,
    /// Attempts whose outcome differed from `expect`.
    pub wrong: u64,
    /// Counts of other errors by `stage:ERRNO`, e.g. `{"recv:ETIMEDOUT": 2}`.
    #[serde(default)]
    pub errors: std::collections::BTreeMap<String, u64>,
}

/// Final report of `lab-probe loop`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoopReport {
    /// Wall time the loop ran.
    pub duration_ms: u64,
    /// Rounds over all targets.
    pub rounds: u64,
    /// One entry per `--target`, in order.
    pub targets: Vec<TargetStats>,
}

impl LoopReport {
    /// Parses the report from a finished loop probe's output
    /// (`child.wait_with_output()`); panics with the raw output on error.
    pub fn from_output(out: &Output) -> LoopReport {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
        serde_json::from_str(line).unwrap_or_else(|e| {
            panic!(
                "bad lab-probe loop output ({e}); status {}\nstdout: {stdout}\nstderr: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    /// Sum of `wrong` over all targets.
    pub fn total_wrong(&self) -> u64 {
        self.targets.iter().map(|t| t.wrong).sum()
    }

    /// The stats for the target string `target` (as passed to `--target`).
    pub fn target(&self, target: &str) -> &TargetStats {
        self.targets
            .iter()
            .find(|t| t.target == target)
            .unwrap_or_else(|| panic!("no target {target} in loop report {self:?}"))
    }
}
