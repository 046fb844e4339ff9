//! Reading a process's memory from `/proc/PID/status` (tests and benchmarks measure the agent and
//! the control plane with it).

/// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`...); 0 when the process is gone.
pub fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process() {
        assert!(super::status_kb(std::process::id(), "VmRSS") > 0);
        assert_eq!(super::status_kb(std::process::id(), "NoSuchField"), 0);
    }
}
