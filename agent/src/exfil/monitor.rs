//! The exfiltration monitor: the policy's `spec.exfiltration` turned into detector rules, fed
//! each poll with the kernel's flow counters and the checkpoint directories, producing alert
//! records that name the process, the destination and its country.
use std::{
    net::IpAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use ipnet::IpNet;
use ringfence_policy::{countries::country_str, geo::GeoDb, ExfilAction, Exfiltration, Mode, Policy};
use rustc_hash::FxHashMap as HashMap;
use serde::Serialize;

use super::{
    attribution::Process,
    checkpoints::CheckpointIndex,
    detector::{Alert, AlertKind, Detector, ExfilRules, FlowId, FlowSample, Severity},
    watcher::CheckpointWatcher,
};
use crate::clock::unix_ms;

/// Checkpoint files are compared against transfers for this long after they were last written.
pub const CHECKPOINT_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// One alert as delivered (log, spool, control plane).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertRecord {
    /// Unique per node: the agent's start time and a sequence number.
    pub id: String,
    #[serde(rename = "type")]
    pub record_type: &'static str,
    pub unix_ms: u64,
    pub kind: AlertKind,
    pub severity: Severity,
    pub policy: String,
    /// `None` when no connect hook saw the flow's process (e.g. a flow older than the agent).
    pub pid: Option<u32>,
    pub comm: Option<String>,
    pub cgroup_id: u64,
    pub destination: IpAddr,
    pub port: Option<u16>,
    pub country: Option<String>,
    pub bytes: u64,
    pub file: Option<PathBuf>,
    /// `alert`, `block`, or `would-block` (action block under an audit-mode policy).
    pub action: &'static str,
    /// With `block`: how long the destination stays blocked for the cgroup.
    pub block_secs: Option<u64>,
    pub explanation: String,
    /// Under `--cgroup-root`: the workload (cgroup path under the root) and its labels
    /// (`key=value,...`), when the cgroup is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<String>,
    /// Budget alerts: which budget (`perDestination`, `total`, `dns`, `icmp`) and the time from
    /// the kernel's crossing to the agent's delivery, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<f64>,
}

/// The monitor for one policy's rules.
#[derive(Debug)]
pub struct ExfilMonitor {
    policy: String,
    rules: Exfiltration,
    enforce: bool,
    /// `spec.peers`, and the WireGuard peers the agent knows ([`ExfilMonitor::set_peer_addresses`]):
    /// approved with `approvedSinks.peers`; `peer_cidrs` is both together.
    policy_peers: Vec<IpNet>,
    extra_peers: Vec<IpNet>,
    peer_cidrs: Vec<IpNet>,
    detector: Detector,
    index: CheckpointIndex,
    watcher: Option<CheckpointWatcher>,
    approved: HashMap<IpAddr, bool>,
    id_prefix: String,
    seq: u64,
    /// The first poll takes the counters as a baseline (see [`Detector::prime`]).
    primed: bool,
}

fn detector_rules(x: &Exfiltration) -> ExfilRules {
    ExfilRules {
        bulk: x.bulk.as_ref().map(|b| (b.bytes, Duration::from_secs(b.window_secs))),
        checkpoint_tolerance: x.checkpoints.as_ref().map(|c| f64::from(c.tolerance_bp) / 10_000.0),
        block: x.action == ExfilAction::Block,
    }
}

impl ExfilMonitor {
    /// `None` when the policy has no `spec.exfiltration`.
    pub fn new(policy: &Policy) -> Option<Self> {
        let rules = policy.exfiltration.clone()?;
        Some(Self {
            policy: policy.name.clone(),
            enforce: policy.mode == Mode::Enforce,
            policy_peers: policy.peers.clone(),
            extra_peers: Vec::new(),
            peer_cidrs: policy.peers.clone(),
            detector: Detector::new(detector_rules(&rules)),
            index: CheckpointIndex::new(CHECKPOINT_RETENTION),
            watcher: rules.checkpoints.clone().map(CheckpointWatcher::new),
            approved: HashMap::default(),
            id_prefix: format!("{:x}", unix_ms()),
            seq: 0,
            primed: false,
            rules,
        })
    }

    /// Follows a policy reload: same rules keep their state (windows, dedup); changed rules
    /// start over. Returns `None` when the new policy has no exfiltration section.
    pub fn update(mut self, policy: &Policy) -> Option<Self> {
        let rules = policy.exfiltration.clone()?;
        let same = rules == self.rules;
        self.policy = policy.name.clone();
        self.enforce = policy.mode == Mode::Enforce;
        self.policy_peers = policy.peers.clone();
        let extra = std::mem::take(&mut self.extra_peers);
        self.set_peer_addresses(extra);
        if !same {
            self.detector.retune(detector_rules(&rules));
            if rules.checkpoints != self.rules.checkpoints {
                self.watcher = rules.checkpoints.clone().map(CheckpointWatcher::new);
            }
            self.rules = rules;
        }
        Some(self)
    }

    /// Also approve these addresses when `approvedSinks.peers` is set (WireGuard peer endpoints
    /// and tunnel addresses known to the agent).
    pub fn set_peer_addresses(&mut self, peers: Vec<IpNet>) {
        self.peer_cidrs = self.policy_peers.iter().chain(&peers).copied().collect();
        self.extra_peers = peers;
        self.approved.clear();
    }

    /// Looks at the checkpoint directories (call once per poll, before [`ExfilMonitor::poll`]).
    pub fn scan_checkpoints(&mut self, now: Instant) -> usize {
        match self.watcher.as_mut() {
            Some(w) => w.scan(now, &mut self.index),
            None => 0,
        }
    }

    /// Flows that alerted before (restored from the state directory after a restart).
    pub fn restore_fired(&mut self, flows: impl IntoIterator<Item = FlowId>) {
        self.detector.restore_fired(flows);
    }

    /// The flows that alerted, when that set changed (to persist it).
    pub fn take_fired_change(&mut self) -> Option<Vec<FlowId>> {
        self.detector.take_fired_change()
    }

    /// Forgets a destination after its block was released.
    pub fn forgive(&mut self, cgroup_id: u64, destination: IpAddr) {
        self.detector.forgive(cgroup_id, destination);
    }

    /// How long a block lasts under these rules.
    pub fn block_for(&self) -> Duration {
        Duration::from_secs(self.rules.block_for_secs)
    }

    /// Flows and destinations the detector tracks.
    pub fn tracked(&self) -> (usize, usize) {
        self.detector.tracked()
    }

    /// One poll: flow counters in, alert records out; `owner` names the process that last
    /// connected from a cgroup to a destination; `learned_sink` says whether an address is a
    /// live one the kernel learned for an approved sink's name (asked at every poll, not cached:
    /// learned addresses expire).
    pub fn poll(
        &mut self,
        now: Instant,
        flows: &[FlowSample],
        geo: Option<&GeoDb>,
        owner: &dyn Fn(u64, IpAddr) -> Option<Process>,
        learned_sink: &dyn Fn(IpAddr) -> bool,
    ) -> Vec<AlertRecord> {
        let (rules, peers, cache) = (&self.rules, &self.peer_cidrs, &mut self.approved);
        let by_name = !rules.approved.fqdns.is_empty();
        let approved = |addr: IpAddr| {
            *cache.entry(addr).or_insert_with(|| {
                let country = geo.and_then(|g| g.lookup(addr)).map(|(_, c)| c);
                rules.approved.approves(addr, country, peers)
            }) || (by_name && learned_sink(addr))
        };
        if !self.primed {
            self.primed = true;
            self.detector.prime(now, flows);
        }
        let alerts = self.detector.observe(now, flows, approved, &self.index);
        alerts.into_iter().map(|a| self.record(a, geo, owner)).collect()
    }

    fn record(
        &mut self,
        a: Alert,
        geo: Option<&GeoDb>,
        owner: &dyn Fn(u64, IpAddr) -> Option<Process>,
    ) -> AlertRecord {
        self.seq += 1;
        let process = owner(a.cgroup_id, a.destination);
        let process = process.as_ref();
        let action = match (a.block, self.enforce) {
            (false, _) => "alert",
            (true, true) => "block",
            (true, false) => "would-block",
        };
        AlertRecord {
            id: format!("{}-{}", self.id_prefix, self.seq),
            record_type: "exfiltration",
            unix_ms: unix_ms(),
            kind: a.kind,
            severity: a.severity,
            policy: self.policy.clone(),
            pid: process.map(|p| p.pid),
            comm: process.map(|p| p.comm.clone()),
            cgroup_id: a.cgroup_id,
            destination: a.destination,
            port: a.port,
            country: geo.and_then(|g| g.lookup(a.destination)).map(|(_, c)| country_str(&c).to_owned()),
            bytes: a.bytes,
            file: a.file,
            action,
            block_secs: (action == "block").then_some(self.rules.block_for_secs),
            explanation: a.explanation,
            workload: None,
            labels: None,
            budget: None,
            latency_ms: None,
        }
    }

    /// The largest checkpoint (single file or sharded total) seen recently, in bytes.
    pub fn largest_checkpoint(&self) -> u64 {
        self.index.candidates().iter().map(|c| c.bytes).max().unwrap_or(0)
    }
}

#[cfg(test)]
#[path = "monitor_tests.rs"]
mod tests;
