//! `cargo xtask test`: setup, clippy with warnings as errors, then every test in the workspace
//! (unit tests and the privileged network-namespace tests, serially), ending with one summary
//! line of counts.
use std::{
    io::{BufRead, BufReader},
    process::Stdio,
};

use anyhow::{bail, Context, Result};

use crate::util::{cargo, is_root, run};

/// Sums of the `test result:` lines cargo prints per test binary.
#[derive(Default, Debug, PartialEq, Eq)]
pub struct Counts {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
}

impl Counts {
    /// Adds one `test result: ok. 3 passed; 0 failed; 1 ignored; ...` line.
    pub fn add_line(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result: ") else { return };
        for part in rest.split([';', '.']) {
            let mut words = part.split_whitespace();
            if let (Some(n), Some(what)) = (words.next(), words.next()) {
                if let Ok(n) = n.parse::<u64>() {
                    match what {
                        "passed" => self.passed += n,
                        "failed" => self.failed += n,
                        "ignored" => self.ignored += n,
                        _ => {}
                    }
                }
            }
        }
    }

    /// Moves the tests recorded in a skip log (one line each) from passed to skipped.
    pub fn add_skipped(&mut self, log: &str) {
        let n = log.lines().filter(|l| !l.trim().is_empty()).count() as u64;
        self.passed = self.passed.saturating_sub(n);
        self.ignored += n;
    }
}

/// The environment variable `ringfence_tests::skip` writes to (kept in step by hand: xtask does
/// not depend on the test crate).
const SKIP_LOG_ENV: &str = "RINGFENCE_SKIP_LOG";

/// The crates whose module imports must have no cycles (`cargo xtask cycles`).
const SHIPPED_CRATES: [&str; 7] = [
    "agent/src",
    "control-plane/src",
    "policies/src",
    "proto/src",
    "cli/src",
    "ebpf/ringfence-common/src",
    "ebpf/ringfence-ebpf/src",
];

pub fn test(extra: &[String]) -> Result<()> {
    crate::setup::setup(false)?;
    if !is_root() {
        bail!("the integration tests create network namespaces, cgroups and BPF programs: run as root (sudo -E cargo xtask test)");
    }
    // No --workspace: the default members exclude the eBPF crate, which only builds for BPF.
    // Lints first: a warning anywhere fails the run before any test starts.
    run(cargo().args(["clippy", "--all-targets", "--", "-D", "warnings"]))
        .context("cargo clippy found problems")?;
    // Imports between modules run one way in the shipped crates.
    let crates: Vec<std::path::PathBuf> = SHIPPED_CRATES.iter().map(Into::into).collect();
    crate::cycles::cycles(&crates, crate::cycles::Show { all: false, graph: false })
        .context("cargo xtask cycles found import cycles")?;
    run(cargo().args(["build", "--bins"]))?;
    // Tests that cannot run here record why (ringfence_tests::skip): counted as skipped.
    let skip_log = std::env::temp_dir().join(format!("ringfence-skipped-{}", std::process::id()));
    let _ = std::fs::remove_file(&skip_log);
    let mut child = cargo()
        .args(["test", "--no-fail-fast"])
        .args(["--", "--test-threads=1"])
        .args(extra)
        .env(SKIP_LOG_ENV, &skip_log)
        .stdout(Stdio::piped())
        .spawn()
        .context("spawning cargo test")?;
    let mut counts = Counts::default();
    for line in BufReader::new(child.stdout.take().expect("piped stdout")).lines() {
        let line = line.context("reading cargo test output")?;
        println!("{line}");
        counts.add_line(&line);
    }
    let status = child.wait()?;
    let skipped = std::fs::read_to_string(&skip_log).unwrap_or_default();
    let _ = std::fs::remove_file(&skip_log);
    counts.add_skipped(&skipped);
    for line in skipped.lines() {
        println!("skipped: {}", line.replace('\t', ": "));
    }
    println!("tests: {} passed, {} failed, {} skipped", counts.passed, counts.failed, counts.ignored);
    if !status.success() || counts.failed > 0 {
        bail!("tests failed ({status})");
    }
    if counts.passed == 0 {
        bail!("no test ran");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::Counts;

    #[test]
    fn sums_result_lines() {
        let mut c = Counts::default();
        c.add_line(
            "test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s",
        );
        c.add_line("test result: FAILED. 2 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out");
        c.add_line("running 3 tests");
        assert_eq!(c, Counts { passed: 5, failed: 1, ignored: 1 });
        c.add_skipped("geo_shared::x\tno database\n\n");
        assert_eq!(c, Counts { passed: 4, failed: 1, ignored: 2 });
    }
}
