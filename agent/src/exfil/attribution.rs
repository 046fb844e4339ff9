//! Which process opened a flow: the connect hooks report pid and comm with each verdict, the
//! packet path (which counts the bytes) has no process context. Remembers the latest allowed
//! connection per (cgroup, destination, port) so alerts can name the process.
use std::{
    collections::HashMap,
    net::IpAddr,
    time::{Duration, Instant},
};

use serde::Serialize;

use crate::events::VerdictRecord;

/// Entries kept at most (oldest dropped first when full).
const CAPACITY: usize = 65_536;
/// Entries older than this are forgotten.
const KEEP: Duration = Duration::from_secs(3600);

/// The process behind a flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Process {
    pub pid: u32,
    pub comm: String,
}

/// Latest process per (cgroup, destination, port), and per (cgroup, destination).
#[derive(Debug, Default)]
pub struct ProcessIndex {
    by_port: HashMap<(u64, IpAddr, u16), (Process, Instant)>,
    by_dest: HashMap<(u64, IpAddr), (Process, Instant)>,
}

impl ProcessIndex {
    /// Learns from a verdict record (only connections that went ahead, with a process).
    pub fn learn(&mut self, now: Instant, r: &VerdictRecord) {
        if r.pid == 0 || r.verdict == "deny" || r.verdict == "plaintext-drop" {
            return;
        }
        if self.by_port.len() >= CAPACITY {
            self.prune(now, true);
        }
        let p = Process { pid: r.pid, comm: r.comm.clone() };
        self.by_port.insert((r.cgroup_id, r.dst, r.port), (p.clone(), now));
        self.by_dest.insert((r.cgroup_id, r.dst), (p, now));
    }

    /// The process that connected from `cgroup_id` to `dst` (on `port` if known, else any port).
    pub fn find(&self, cgroup_id: u64, dst: IpAddr, port: Option<u16>) -> Option<&Process> {
        port.and_then(|p| self.by_port.get(&(cgroup_id, dst, p)))
            .or_else(|| self.by_dest.get(&(cgroup_id, dst)))
            .map(|(p, _)| p)
    }

    /// Forgets entries older than [`KEEP`] (or, when `full`, the older half).
    pub fn prune(&mut self, now: Instant, full: bool) {
        let mut cutoff = now.checked_sub(KEEP).unwrap_or(now);
        if full {
            let mut times: Vec<Instant> = self.by_port.values().map(|(_, t)| *t).collect();
            times.sort_unstable();
            if let Some(median) = times.get(times.len() / 2) {
                cutoff = cutoff.max(*median);
            }
        }
        self.by_port.retain(|_, (_, t)| *t >= cutoff);
        self.by_dest.retain(|_, (_, t)| *t >= cutoff);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(verdict: &'static str, pid: u32, port: u16) -> VerdictRecord {
        VerdictRecord {
            verdict,
            rule: "r".into(),
            rule_id: 1,
            pid,
            comm: format!("proc{pid}"),
            cgroup_id: 9,
            dst: "203.0.113.5".parse().unwrap(),
            port,
            protocol: "tcp".into(),
            hook: "rf_connect4",
            generation: 1,
            country: None,
        }
    }

    #[test]
    fn finds_by_port_then_by_destination_and_ignores_denials() {
        let now = Instant::now();
        let mut idx = ProcessIndex::default();
        idx.learn(now, &record("allow", 10, 443));
        idx.learn(now, &record("allow", 11, 8443));
        idx.learn(now, &record("deny", 12, 443));
        let dst: IpAddr = "203.0.113.5".parse().unwrap();
        assert_eq!(idx.find(9, dst, Some(443)).map(|p| p.pid), Some(10));
        assert_eq!(idx.find(9, dst, Some(9999)).map(|p| p.pid), Some(11), "latest for the destination");
        assert_eq!(idx.find(9, dst, None).map(|p| p.comm.as_str()), Some("proc11"));
        assert!(idx.find(8, dst, None).is_none(), "other cgroup");
        idx.prune(now + KEEP + Duration::from_secs(1), false);
        assert!(idx.find(9, dst, None).is_none(), "old entries forgotten");
    }
}
