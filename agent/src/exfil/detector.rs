//! The exfiltration detector, sans IO: flow-counter snapshots and the checkpoint index in,
//! alerts out. Bulk: bytes to one non-approved destination (per cgroup) within a sliding window
//! cross a threshold. Checkpoint: a settled flow's (finished, or idle for [`SETTLE`]) or a
//! settled destination's cumulative bytes come within a tolerance of a recent checkpoint file's
//! size (or a sharded checkpoint's total); a larger transfer passing through that size on its way
//! does not match. A flow alerts at most once in its life, across policy reloads, block releases
//! and (with the shell persisting [`Detector::fired_flows`]) agent restarts.
use std::{
    collections::{HashSet, VecDeque},
    net::IpAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use rustc_hash::FxHashMap as HashMap;
use serde::Serialize;

use super::checkpoints::{Candidate, CheckpointIndex};
pub use crate::flows::sample::{FlowId, FlowSample};

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

/// A flow whose bytes have not changed for this long is settled (as is one that sent FIN/RST).
pub const SETTLE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AlertKind {
    Bulk,
    Checkpoint,
    /// A budget the kernel enforces was spent (`spec.exfiltration.budgets`).
    Budget,
}

impl Severity {
    /// As serialized: `high` or `critical`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl AlertKind {
    /// As serialized: `bulk` or `checkpoint`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Bulk => "bulk",
            AlertKind::Checkpoint => "checkpoint",
            AlertKind::Budget => "budget",
        }
    }
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

type DestId = (u64, IpAddr);

/// A flow's counter at the previous poll and when it last changed.
#[derive(Debug, Clone, Copy)]
struct Seen {
    bytes: u64,
    changed: Instant,
}

/// What the detector remembers about one (cgroup, destination).
#[derive(Debug, Default)]
struct DestState {
    /// Bytes sent per poll within the bulk window (one entry per poll), and their sum.
    window: VecDeque<(Instant, u64)>,
    window_sum: u64,
    /// Bytes sent since the destination was last idle for [`IDLE_FORGET`].
    total: u64,
    last_active: Option<Instant>,
}

/// A destination with no new bytes for this long is forgotten (its total restarts).
const IDLE_FORGET: Duration = Duration::from_secs(600);

/// The detector's state between polls.
#[derive(Debug)]
pub struct Detector {
    rules: ExfilRules,
    /// Last counter per flow present in the previous poll.
    last: HashMap<FlowId, Seen>,
    dests: HashMap<DestId, DestState>,
    fired: HashSet<Fired>,
    /// Flows that raised a checkpoint alert: never again, whatever is reloaded or released.
    fired_flows: HashSet<FlowId>,
    /// `fired_flows` changed since [`Detector::take_fired_change`] last looked.
    fired_dirty: bool,
}

fn within(bytes: u64, size: u64, tolerance: f64) -> bool {
    (bytes as f64 - size as f64).abs() <= tolerance * size as f64
}

impl Detector {
    pub fn new(rules: ExfilRules) -> Self {
        Self {
            rules,
            last: HashMap::default(),
            dests: HashMap::default(),
            fired: HashSet::new(),
            fired_flows: HashSet::new(),
            fired_dirty: false,
        }
    }

    /// Flows that already alerted (from the state directory, after a restart).
    pub fn restore_fired(&mut self, flows: impl IntoIterator<Item = FlowId>) {
        self.fired_flows.extend(flows);
    }

    /// The flows that alerted, when the set changed since the last call (to persist it).
    pub fn take_fired_change(&mut self) -> Option<Vec<FlowId>> {
        if !std::mem::take(&mut self.fired_dirty) {
            return None;
        }
        let mut all: Vec<FlowId> = self.fired_flows.iter().copied().collect();
        all.sort_by_key(|f| (f.first_seen_ns, f.cgroup_id, f.local_port, f.remote_port));
        Some(all)
    }

    pub fn rules(&self) -> &ExfilRules {
        &self.rules
    }

    /// Takes the flows' current counters as the starting point without counting them: for an
    /// agent that starts (or restarts) while long-running flows already sent a lot, which must
    /// not look like a burst within the window.
    pub fn prime(&mut self, now: Instant, flows: &[FlowSample]) {
        self.last = flows.iter().map(|f| (f.id, Seen { bytes: f.tx_bytes, changed: now })).collect();
    }

    /// New rules: windows, totals and destination alerts start over; flow counters stay the
    /// baseline, and flows that alerted stay alerted.
    pub fn retune(&mut self, rules: ExfilRules) {
        self.rules = rules;
        self.dests.clear();
        self.fired.clear();
    }

    /// Number of flows and destinations tracked (for metrics and benchmarks).
    pub fn tracked(&self) -> (usize, usize) {
        (self.last.len(), self.dests.len())
    }

    /// Forgets a destination's history and alerts (after an operator released its block): a new
    /// full threshold is needed before it alerts again.
    pub fn forgive(&mut self, cgroup_id: u64, remote: IpAddr) {
        self.dests.remove(&(cgroup_id, remote));
        self.fired.retain(|f| match f {
            Fired::Bulk(c, r) | Fired::Checkpoint(c, r, _) => (*c, *r) != (cgroup_id, remote),
        });
    }

    /// Takes one poll of flow counters (every flow present in the kernel table); `approved` says
    /// whether a destination is an approved sink.
    pub fn observe(
        &mut self,
        now: Instant,
        flows: &[FlowSample],
        mut approved: impl FnMut(IpAddr) -> bool,
        checkpoints: &CheckpointIndex,
    ) -> Vec<Alert> {
        let mut alerts = Vec::new();
        let candidates = checkpoints.candidates();
        let mut last =
            HashMap::with_capacity_and_hasher(self.last.len().max(flows.len()), Default::default());
        for f in flows {
            if !approved(f.id.remote) {
                self.observe_flow(now, f, &mut last, &candidates, &mut alerts);
            }
        }
        // Flows gone from the table are dropped (and forgotten as alerted once gone: a reused
        // 5-tuple has another first-seen time anyway).
        self.last = last;
        let before = self.fired_flows.len();
        let present = &self.last;
        self.fired_flows.retain(|f| present.contains_key(f));
        self.fired_dirty |= self.fired_flows.len() != before;
        self.dests.retain(|_, d| {
            d.last_active.is_some_and(|t| now.saturating_duration_since(t) <= IDLE_FORGET)
                || !d.window.is_empty()
        });
        // Settled destination totals against checkpoint sizes (when there is something to match).
        if self.rules.checkpoint_tolerance.is_some() && !candidates.is_empty() {
            let settled =
                |d: &DestState| d.last_active.is_some_and(|t| now.saturating_duration_since(t) >= SETTLE);
            let totals: Vec<(DestId, u64)> =
                self.dests.iter().filter(|(_, d)| settled(d)).map(|(k, d)| (*k, d.total)).collect();
            for ((cgroup_id, remote), total) in totals {
                let name = || format!("cgroup {cgroup_id} -> {remote}");
                self.match_checkpoints(&candidates, &name, (cgroup_id, remote), None, total, &mut alerts);
            }
        }
        if let Some((threshold, window)) = self.rules.bulk {
            self.check_bulk(now, threshold, window, &mut alerts);
        }
        alerts
    }

    fn observe_flow(
        &mut self,
        now: Instant,
        f: &FlowSample,
        last: &mut HashMap<FlowId, Seen>,
        candidates: &[Candidate],
        alerts: &mut Vec<Alert>,
    ) {
        let id = f.id;
        let prev = self.last.get(&id).copied();
        let prev_bytes = prev.map_or(0, |p| p.bytes);
        // A smaller counter is a new flow with the same identity: all of it is new.
        let delta = if f.tx_bytes >= prev_bytes { f.tx_bytes - prev_bytes } else { f.tx_bytes };
        let changed = match prev {
            Some(p) if delta == 0 => p.changed,
            _ => now,
        };
        last.insert(id, Seen { bytes: f.tx_bytes, changed });
        let dest = (f.id.cgroup_id, f.id.remote);
        if delta > 0 {
            let d = self.dests.entry(dest).or_default();
            match d.window.back_mut() {
                Some((t, bytes)) if *t == now => *bytes += delta,
                _ => d.window.push_back((now, delta)),
            }
            d.window_sum += delta;
            d.total += delta;
            d.last_active = Some(now);
        }
        // Only a settled flow is compared: a transfer still growing may pass through a checkpoint's
        // size on its way to something larger.
        let settled = f.finished || now.saturating_duration_since(changed) >= SETTLE;
        if !settled || self.fired_flows.contains(&id) {
            return;
        }
        let name = || format!("{}:{}->{}:{}", f.id.local, f.id.local_port, f.id.remote, f.id.remote_port);
        // Matched (alerted now, or already for this destination and file): done with this flow.
        if self.match_checkpoints(candidates, &name, dest, Some(f.id.remote_port), f.tx_bytes, alerts) {
            self.fired_flows.insert(id);
            self.fired_dirty = true;
        }
    }

    fn check_bulk(&mut self, now: Instant, threshold: u64, window: Duration, alerts: &mut Vec<Alert>) {
        for (&(cgroup_id, remote), d) in self.dests.iter_mut() {
            while d.window.front().is_some_and(|(t, _)| now.saturating_duration_since(*t) > window) {
                let (_, bytes) = d.window.pop_front().expect("front exists");
                d.window_sum -= bytes;
            }
            let sum = d.window_sum;
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
    }

    fn match_checkpoints(
        &mut self,
        candidates: &[Candidate],
        who: &dyn Fn() -> String,
        (cgroup_id, remote): DestId,
        port: Option<u16>,
        bytes: u64,
        alerts: &mut Vec<Alert>,
    ) -> bool {
        let Some(tolerance) = self.rules.checkpoint_tolerance else { return false };
        let mut matched = false;
        for c in
            candidates.iter().filter(|c| c.bytes >= MIN_CHECKPOINT_BYTES && within(bytes, c.bytes, tolerance))
        {
            matched = true;
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
                    "{} sent {bytes} bytes, within {:.1}% of {what}; {remote} is not an approved sink",
                    who(),
                    tolerance * 100.0
                ),
            });
        }
        matched
    }
}
