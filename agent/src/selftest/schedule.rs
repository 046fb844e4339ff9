//! The self-test on a schedule inside `run` (`--selftest-every SECONDS`, off by default): each
//! run is `ringfence-agent selftest exfil` as a child process (its throwaway cgroup and sink stay
//! out of the agent), on a blocking thread; its result is logged (`exfiltration self-test`, with
//! every field of the result) and counted in `ringfence_selftest_runs_total{result}`.
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use tracing::{error, info};

use crate::metrics::Metrics;

/// Starts one self-test run in the background.
pub fn spawn(bpffs: PathBuf, cgroup: PathBuf, metrics: Arc<Metrics>) {
    tokio::task::spawn_blocking(move || {
        let out = Command::new("/proc/self/exe")
            .args(["selftest", "exfil", "--bpffs"])
            .arg(&bpffs)
            .arg("--cgroup")
            .arg(&cgroup)
            .output();
        let parsed =
            out.as_ref().ok().and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok());
        let passed = parsed.as_ref().is_some_and(|v| v["passed"] == true);
        match (&parsed, passed) {
            (Some(v), true) => info!(result = %v, "exfiltration self-test passed"),
            (Some(v), false) => error!(result = %v, reason = %v["reason"], "exfiltration self-test FAILED"),
            (None, _) => error!(output = ?out, "exfiltration self-test FAILED: no result"),
        }
        let label = if passed { "pass" } else { "fail" };
        metrics.inc_counter(
            "ringfence_selftest_runs_total",
            "Exfiltration self-test runs, by result.",
            &[("result", label)],
            1,
        );
    });
}
