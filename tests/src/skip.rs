//! Tests that cannot run on this machine (a kernel feature or a data file missing) say why and
//! are counted as skipped, not passed: `cargo xtask test` points [`SKIP_LOG_ENV`] at a file,
//! reads it after the run and moves those tests from "passed" to "skipped".
use std::io::Write;

/// Environment variable naming the file skipped tests are recorded in.
pub const SKIP_LOG_ENV: &str = "RINGFENCE_SKIP_LOG";

/// Records that `test` did not run, and why. The test then returns.
pub fn skip(test: &str, reason: &str) {
    eprintln!("SKIPPED {test}: {reason}");
    let Some(path) = std::env::var_os(SKIP_LOG_ENV) else { return };
    let line = format!("{test}\t{}\n", reason.replace(['\t', '\n'], " "));
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        panic!("recording the skip of {test} in {}: {e}", std::path::Path::new(&path).display());
    }
}
