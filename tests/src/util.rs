//! Small shared helpers: unique ids and checked command execution.

use std::ffi::OsStr;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Returns a process-wide increasing counter (starts at 0).
pub(crate) fn next_id() -> u32 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// Runs `program args…`, panicking (with stdout/stderr) unless it exits 0.
pub(crate) fn run_checked<S: AsRef<OsStr>>(what: &str, program: &str, args: &[S]) -> Output {
    let out = run_unchecked(what, program, args);
    if !out.status.success() {
        panic!(
            "{what}: `{}` failed with {}\nstdout: {}\nstderr: {}",
            render(program, args),
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    out
}

/// Runs `program args…` and returns its output whatever the exit status;
/// panics only when the program cannot be started.
pub(crate) fn run_unchecked<S: AsRef<OsStr>>(what: &str, program: &str, args: &[S]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run `{}`: {e}", render(program, args)))
}

/// Renders a command line for messages.
pub(crate) fn render<S: AsRef<OsStr>>(program: &str, args: &[S]) -> String {
    let mut s = program.to_string();
    for a in args {
        s.push(' ');
        s.push_str(&a.as_ref().to_string_lossy());
    }
    s
}

/// True when a process with this pid exists.
pub(crate) fn pid_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// CLOCK_MONOTONIC in nanoseconds (the clock the agent reports attach times in, and
/// `bpf_ktime_get_ns`).
pub fn monotonic_ns() -> u64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC is always available");
    ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64
}
