//! The exfiltration detector, sans IO: flow-counter snapshots and the checkpoint index in,
//! alerts out. Bulk: bytes to one non-approved destination (per cgroup) within a sliding window
//! cross a threshold. Checkpoint: a flow's or a destination's cumulative bytes come within a
//! tolerance of a recent checkpoint file's size (or a sharded checkpoint's total).
use std::{
    collections::{HashMap, HashSet, VecDeque},
    net::IpAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use serde::Serialize;

use super::checkpoints::CheckpointIndex;

/// Checkpoint candidates smaller than this are not matched (too many coincidences).
const MIN_CHECKPOINT_BYTES: u64 = 1 << 20;

/// What the policy's `spec.exfiltration` says, in detector terms.
#[derive(Debug, Clone, PartialEq)]
pub struct ExfilRules {
    /// Bulk threshold and window.
    pub bulk: Option<(u64, Duration)>,
    /// Relative tolerance for checkpoint matches (0.02 = 2 %); `None` disables them.
    pub checkpoint_tolerance: Option<f64>,
    /// `action: block` rather than `alert`.
    pub block: bool,
}

/// One flow's cumulative counters at a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowSample {
    pub cgroup_id: u64,
    pub local: IpAddr,
    pub local_port: u16,
    pub remote: IpAddr,
    pub remote_port: u16,
    pub protocol: u8,
    /// Cumulative bytes sent.
    pub tx_bytes: u64,
}

impl FlowSample {
    fn id(&self) -> (u64, IpAddr, u16, IpAddr, u16, u8) {
        (self.cgroup_id, self.local, self.local_port, self.remote, self.remote_port, self.protocol)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlertKind {
    Bulk,
    Checkpoint,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    High,
    Critical,
}

/// One detection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    pub kind: AlertKind,
    pub severity: Severity,
    pub cgroup_id: u64,
    pub destination: IpAddr,
    /// The flow's remote port, when one flow matched (not for destination totals).
    pub port: Option<u16>,
    pub bytes: u64,
    /// The matched checkpoint (first shard for a sharded one).
    pub file: Option<PathBuf>,
    /// The rule asks to block the destination for this cgroup.
    pub block: bool,
    pub explanation: String,
}

/// Dedup keys: one alert per destination (and cgroup) per rule, and per file for checkpoint
/// matches, whether one flow or the destination's total matched first.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Fired {
    Bulk(u64, IpAddr),
    Checkpoint(u64, IpAddr, PathBuf),
}

/// The detector's state between polls.
#[derive(Debug)]
pub struct Detector {
    rules: ExfilRules,
    last: HashMap<(u64, IpAddr, u16, IpAddr, u16, u8), u64>,
    windows: HashMap<(u64, IpAddr), VecDeque<(Instant, u64)>>,
    totals: HashMap<(u64, IpAddr), u64>,
    fired: HashSet<Fired>,
}

fn within(bytes: u64, size: u64, tolerance: f64) -> bool {
    (bytes as f64 - size as f64).abs() <= tolerance * size as f64
}

impl Detector {
    pub fn new(rules: ExfilRules) -> Self {
        Self {
            rules,
            last: HashMap::new(),
            windows: HashMap::new(),
            totals: HashMap::new(),
            fired: HashSet::new(),
        }
    }

    /// Takes one poll of flow counters; `approved` says whether a destination is an approved sink.
    pub fn observe(
        &mut self,
        now: Instant,
        flows: &[FlowSample],
        approved: impl Fn(IpAddr) -> bool,
        checkpoints: &CheckpointIndex,
    ) -> Vec<Alert> {
        let mut alerts = Vec::new();
        let candidates = checkpoints.candidates();
        for f in flows.iter().filter(|f| !approved(f.remote)) {
            let prev = self.last.insert(f.id(), f.tx_bytes).unwrap_or(0);
            // A smaller counter is a new flow with the same 5-tuple: all of it is new.
            let delta = if f.tx_bytes >= prev { f.tx_bytes - prev } else { f.tx_bytes };
            let dest = (f.cgroup_id, f.remote);
            if delta > 0 {
                self.windows.entry(dest).or_default().push_back((now, delta));
                *self.totals.entry(dest).or_default() += delta;
            }
            let flow_name = format!("{}:{}->{}:{}", f.local, f.local_port, f.remote, f.remote_port);
            self.match_checkpoints(
                &candidates,
                &flow_name,
                f.cgroup_id,
                f.remote,
                Some(f.remote_port),
                f.tx_bytes,
                &mut alerts,
            );
        }
        let totals: Vec<((u64, IpAddr), u64)> = self.totals.iter().map(|(k, v)| (*k, *v)).collect();
        for ((cgroup_id, remote), total) in totals {
            let name = format!("cgroup {cgroup_id} -> {remote}");
            self.match_checkpoints(&candidates, &name, cgroup_id, remote, None, total, &mut alerts);
        }
        if let Some((threshold, window)) = self.rules.bulk {
            self.check_bulk(now, threshold, window, &mut alerts);
        }
        alerts
    }

    fn check_bulk(&mut self, now: Instant, threshold: u64, window: Duration, alerts: &mut Vec<Alert>) {
        for (&(cgroup_id, remote), entries) in self.windows.iter_mut() {
            while entries.front().is_some_and(|(t, _)| now.saturating_duration_since(*t) > window) {
                entries.pop_front();
            }
            let sum: u64 = entries.iter().map(|(_, b)| b).sum();
            if sum >= threshold && self.fired.insert(Fired::Bulk(cgroup_id, remote)) {
                alerts.push(Alert {
                    kind: AlertKind::Bulk,
                    severity: Severity::High,
                    cgroup_id,
                    destination: remote,
                    port: None,
                    bytes: sum,
                    file: None,
                    block: self.rules.block,
                    explanation: format!(
                        "{sum} bytes sent from cgroup {cgroup_id} to {remote} within {}s, over the bulk threshold of {threshold} bytes; {remote} is not an approved sink",
                        window.as_secs()
                    ),
                });
            }
        }
        self.windows.retain(|_, e| !e.is_empty());
    }

    #[allow(clippy::too_many_arguments)]
    fn match_checkpoints(
        &mut self,
        candidates: &[super::checkpoints::Candidate],
        who: &str,
        cgroup_id: u64,
        remote: IpAddr,
        port: Option<u16>,
        bytes: u64,
        alerts: &mut Vec<Alert>,
    ) {
        let Some(tolerance) = self.rules.checkpoint_tolerance else { return };
        for c in
            candidates.iter().filter(|c| c.bytes >= MIN_CHECKPOINT_BYTES && within(bytes, c.bytes, tolerance))
        {
            if !self.fired.insert(Fired::Checkpoint(cgroup_id, remote, c.path.clone())) {
                continue;
            }
            let what = if c.shards > 1 {
                format!(
                    "the {} shards of the checkpoint starting with {} ({} bytes)",
                    c.shards,
                    c.path.display(),
                    c.bytes
                )
            } else {
                format!("checkpoint file {} ({} bytes)", c.path.display(), c.bytes)
            };
            alerts.push(Alert {
                kind: AlertKind::Checkpoint,
                severity: Severity::Critical,
                cgroup_id,
                destination: remote,
                port,
                bytes,
                file: Some(c.path.clone()),
                block: self.rules.block,
                explanation: format!(
                    "{who} sent {bytes} bytes, within {:.1}% of {what}; {remote} is not an approved sink",
                    tolerance * 100.0
                ),
            });
        }
    }
}
