//! The running agent's exfiltration loop: each poll reads the kernel's flow counters and the
//! checkpoint directories into the [`ExfilMonitor`], delivers its alerts (log, fsync'd spool,
//! metrics) and keeps the kernel's blocks in step (set, expired, released by an operator). The
//! flows that alerted are kept in the state directory, so a restarted agent does not alert on
//! them again.
use std::{
    collections::HashMap,
    net::IpAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use ringfence_policy::{geo::GeoDb, Policy};
use tracing::{error, info, warn};

use aya::maps::{Array, MapData};
use ringfence_common::BUDGET_CHECKPOINT_MAP;

use super::{
    attribution::Owners,
    blocks::BlockTable,
    budget::{crossing_record, Crossing},
    detector::FlowId,
    monitor::{AlertRecord, ExfilMonitor},
};
use crate::{error::AgentError, files::write_atomic, flows::FlowTable, metrics::Metrics, spool::EventQueue};
/// The flows that raised a checkpoint alert (JSON array), inside the state directory.
pub const FIRED_FILE: &str = "exfil-fired.json";

/// The exfiltration side of the agent's event loop.
pub struct ExfilShell {
    monitor: Option<ExfilMonitor>,
    owners: Owners,
    /// Flows that alerted, as last persisted (for monitors created by later policies).
    fired: Vec<FlowId>,
    fired_path: PathBuf,
    blocks: BlockTable,
    /// Blocks this agent set, with when they expire: one missing early was released.
    installed: HashMap<(u64, IpAddr), Instant>,
    /// The durable spool (shared with the control-plane uploader, woken after each append).
    spool: EventQueue,
    metrics: Arc<Metrics>,
    /// WireGuard peer addresses, kept for monitors created by later policies.
    peers: Vec<ipnet::IpNet>,
    /// Under `--cgroup-root`: cgroup id -> (workload, labels), for naming alerts.
    workloads: HashMap<u64, (String, String)>,
    /// The kernel's copy of the largest checkpoint size (relative budgets), and the value last
    /// written to it.
    largest_checkpoint: Array<MapData, u64>,
    largest_written: u64,
    /// Budget alerts raised (for their ids).
    budget_seq: u64,
}

impl ExfilShell {
    /// The event spool its alerts go to (the self-test's results go there too).
    pub fn queue(&self) -> EventQueue {
        self.spool.clone()
    }

    /// Opens the block and owner maps under `bpffs` and the alerted flows in `state_dir`; alerts
    /// go to `spool`.
    pub fn open(
        policy: &Policy,
        bpffs: &Path,
        state_dir: &Path,
        spool: EventQueue,
        metrics: Arc<Metrics>,
    ) -> Result<Self, AgentError> {
        let blocks = BlockTable::open(bpffs)?;
        let installed = blocks
            .list()?
            .into_iter()
            .map(|b| ((b.cgroup_id, b.destination), Instant::now() + Duration::from_secs(b.expires_in_secs)))
            .collect();
        let fired_path = state_dir.join(FIRED_FILE);
        let fired = load_fired(&fired_path);
        let mut monitor = ExfilMonitor::new(policy);
        if let Some(m) = monitor.as_mut() {
            m.restore_fired(fired.iter().copied());
        }
        Ok(Self {
            monitor,
            owners: Owners::open(bpffs)?,
            fired,
            fired_path,
            blocks,
            installed,
            spool,
            metrics,
            peers: Vec::new(),
            workloads: HashMap::new(),
            largest_checkpoint: crate::maps::open(&crate::maps::maps_dir(bpffs), BUDGET_CHECKPOINT_MAP)?,
            largest_written: 0,
            budget_seq: 0,
        })
    }

    /// Whether the policy in force asks for exfiltration detection.
    pub fn active(&self) -> bool {
        self.monitor.is_some()
    }

    /// The WireGuard peers' addresses (approved sinks with `approvedSinks.peers`).
    pub fn set_peers(&mut self, peers: Vec<ipnet::IpNet>) {
        if let Some(m) = self.monitor.as_mut() {
            m.set_peer_addresses(peers.clone());
        }
        self.peers = peers;
    }

    /// Follows a policy change.
    pub fn on_policy(&mut self, policy: &Policy) {
        self.monitor = match self.monitor.take() {
            Some(m) => m.update(policy),
            None => ExfilMonitor::new(policy).map(|mut m| {
                m.set_peer_addresses(self.peers.clone());
                m.restore_fired(self.fired.iter().copied());
                m
            }),
        };
    }

    /// One poll of the flow table and the checkpoint directories.
    /// The workloads alerts are named by (cgroup id -> workload path, `key=value,...` labels).
    pub fn set_workloads(&mut self, workloads: HashMap<u64, (String, String)>) {
        self.workloads = workloads;
    }

    /// `learned_sink`: see [`ExfilMonitor::poll`].
    pub fn poll(&mut self, flows: &FlowTable, geo: Option<&GeoDb>, learned_sink: &dyn Fn(IpAddr) -> bool) {
        let started = Instant::now();
        self.sync_blocks(started);
        let Some(monitor) = self.monitor.as_mut() else { return };
        monitor.scan_checkpoints(started);
        let largest = monitor.largest_checkpoint();
        if largest > self.largest_written {
            match self.largest_checkpoint.set(0, largest, 0) {
                Ok(()) => {
                    self.largest_written = largest;
                    info!(bytes = largest, "exfiltration budgets: largest checkpoint seen");
                }
                Err(e) => {
                    error!(error = %e, "exfiltration budgets: the largest checkpoint size could not be written")
                }
            }
        }
        let samples = match flows.samples() {
            Ok(s) => s,
            Err(e) => return warn!(error = %e, "exfiltration: reading the flow table"),
        };
        let read = started.elapsed();
        let owners = &self.owners;
        let mut records =
            monitor.poll(started, &samples, geo, &|cgroup_id, dst| owners.find(cgroup_id, dst), learned_sink);
        for r in &mut records {
            if let Some((workload, labels)) = self.workloads.get(&r.cgroup_id) {
                (r.workload, r.labels) = (Some(workload.clone()), Some(labels.clone()));
            }
        }
        let block_for = monitor.block_for();
        let (flows_tracked, dests) = monitor.tracked();
        if let Some(fired) = monitor.take_fired_change() {
            self.save_fired(fired);
        }
        for r in &records {
            self.deliver(r);
            if r.action == "block" {
                self.block(r, block_for);
            }
        }
        let m = &self.metrics;
        m.inc_counter(
            "ringfence_exfil_polls_total",
            "Polls of the flow table by the exfiltration detector.",
            &[],
            1,
        );
        m.set_gauge(
            "ringfence_exfil_flows",
            "Flows the exfiltration detector tracks.",
            &[],
            flows_tracked as f64,
        );
        m.set_gauge("ringfence_exfil_destinations", "Destinations the detector tracks.", &[], dests as f64);
        m.set_gauge(
            "ringfence_exfil_read_seconds",
            "Part of the last poll spent reading the kernel's flow table.",
            &[],
            read.as_secs_f64(),
        );
        m.set_gauge(
            "ringfence_exfil_poll_seconds",
            "Duration of the last exfiltration poll.",
            &[],
            started.elapsed().as_secs_f64(),
        );
    }

    /// A budget crossing the kernel reported (it has already dropped the packet): delivered
    /// like any alert, named with the workload of the sending cgroup.
    pub fn on_budget(&mut self, ev: &ringfence_common::Event, policy: Option<&Policy>) {
        self.budget_seq += 1;
        let crossing = Crossing {
            event: ev,
            policy,
            largest_checkpoint: self.largest_written,
            monotonic_ns: crate::clock::monotonic_ns(),
            unix_ms: crate::clock::unix_ms(),
            id: format!("budget-{:x}-{}", ev.ts_ns, self.budget_seq),
        };
        let mut r = crossing_record(&crossing);
        if let Some((workload, labels)) = self.workloads.get(&r.cgroup_id) {
            (r.workload, r.labels) = (Some(workload.clone()), Some(labels.clone()));
        }
        self.deliver(&r);
    }

    /// Persists the alerted flows (atomically; a failure is logged, the set stays in memory).
    fn save_fired(&mut self, fired: Vec<FlowId>) {
        let json = serde_json::to_vec(&fired).expect("flow ids serialize");
        if let Err(e) = write_atomic(&self.fired_path, &json, 0o600) {
            error!(error = %e, "exfiltration: the alerted flows could not be saved; after a restart they may alert again");
        }
        self.fired = fired;
    }

    /// Logs the alert with the same values the spool record holds (absent fields are null
    /// there and left out of the log line).
    fn deliver(&mut self, r: &AlertRecord) {
        warn!(
            target: "ringfence::alert",
            id = %r.id, kind = r.kind.as_str(), severity = r.severity.as_str(), action = r.action,
            pid = r.pid, comm = r.comm.as_deref(), cgroup_id = r.cgroup_id,
            destination = %r.destination, port = r.port, country = r.country.as_deref(), bytes = r.bytes,
            file = r.file.as_deref().map(|f| tracing::field::display(f.display())),
            unix_ms = r.unix_ms, explanation = %r.explanation, workload = r.workload.as_deref(),
            labels = r.labels.as_deref(), budget = r.budget, latency_ms = r.latency_ms,
            "exfiltration alert"
        );
        let json = serde_json::to_value(r).expect("alert serializes");
        let mut spool = self.spool.spool.lock().expect("spool lock");
        match spool.append(&json) {
            Ok(()) => self.spool.notify.notify_one(),
            Err(e) => error!(error = %e, id = %r.id, "exfiltration alert could not be spooled"),
        }
        self.metrics.inc_counter(
            "ringfence_exfil_alerts_total",
            "Exfiltration alerts raised, by kind and action.",
            &[("kind", r.kind.as_str()), ("action", r.action)],
            1,
        );
        self.metrics.set_gauge(
            "ringfence_alert_spool_pending",
            "Alerts in the local spool not yet delivered.",
            &[],
            spool.pending_count() as f64,
        );
        self.metrics.set_counter(
            "ringfence_alert_spool_dropped_total",
            "Alerts dropped by the spool's size cap.",
            &[],
            spool.dropped(),
        );
    }

    fn block(&mut self, r: &AlertRecord, ttl: Duration) {
        match self.blocks.insert(r.cgroup_id, r.destination, ttl) {
            Ok(()) => {
                self.installed.insert((r.cgroup_id, r.destination), Instant::now() + ttl);
                info!(cgroup_id = r.cgroup_id, destination = %r.destination, ttl_secs = ttl.as_secs(), alert = %r.id,
                    "exfiltration block set (lift it with `ringfence-agent release`)");
            }
            Err(e) => error!(error = %e, destination = %r.destination, "exfiltration block could not be set"),
        }
    }

    /// Expires old blocks and notices the ones an operator released.
    fn sync_blocks(&mut self, now: Instant) {
        let present = match self.blocks.expire() {
            Ok((expired, present)) => {
                for b in expired {
                    self.installed.remove(&(b.cgroup_id, b.destination));
                    info!(cgroup_id = b.cgroup_id, destination = %b.destination, "exfiltration block expired");
                }
                present
            }
            Err(e) => return warn!(error = %e, "expiring exfiltration blocks"),
        };
        self.metrics.set_gauge(
            "ringfence_exfil_blocks",
            "Exfiltration blocks in force.",
            &[],
            present.len() as f64,
        );
        let released: Vec<(u64, IpAddr)> = self
            .installed
            .iter()
            .filter(|(k, until)| {
                **until > now && !present.iter().any(|b| (b.cgroup_id, b.destination) == **k)
            })
            .map(|(k, _)| *k)
            .collect();
        for (cgroup_id, destination) in released {
            self.installed.remove(&(cgroup_id, destination));
            if let Some(m) = self.monitor.as_mut() {
                m.forgive(cgroup_id, destination);
            }
            info!(cgroup_id, destination = %destination, "exfiltration block released");
        }
    }
}

/// The alerted flows saved by an earlier run; an unreadable file is logged and ignored (it only
/// means those flows may alert once more).
fn load_fired(path: &Path) -> Vec<FlowId> {
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            warn!(error = %e, path = %path.display(), "exfiltration: reading the alerted flows");
            return Vec::new();
        }
    };
    serde_json::from_slice(&text).unwrap_or_else(|e| {
        warn!(error = %e, path = %path.display(), "exfiltration: the alerted flows file is corrupt; ignoring it");
        Vec::new()
    })
}
