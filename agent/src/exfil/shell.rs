//! The running agent's exfiltration loop: each poll reads the kernel's flow counters and the
//! checkpoint directories into the [`ExfilMonitor`], delivers its alerts (log, fsync'd spool,
//! metrics) and keeps the kernel's blocks in step (set, expired, released by an operator).
use std::{
    collections::HashMap,
    net::IpAddr,
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use ringfence_policy::{geo::GeoDb, Policy};
use tracing::{error, info, warn};

use super::{blocks::BlockTable, monitor::ExfilMonitor, AlertRecord, ProcessIndex};
use crate::{
    control::EventQueue, error::AgentError, events::VerdictRecord, flows::FlowTable, metrics::Metrics,
};

/// Where alerts are spooled inside the state directory.
pub const SPOOL_DIR: &str = "spool";

/// The exfiltration side of the agent's event loop.
pub struct ExfilShell {
    monitor: Option<ExfilMonitor>,
    procs: ProcessIndex,
    blocks: BlockTable,
    /// Blocks this agent set, with when they expire: one missing early was released.
    installed: HashMap<(u64, IpAddr), Instant>,
    /// The durable spool (shared with the control-plane uploader, woken after each append).
    spool: EventQueue,
    metrics: Arc<Metrics>,
    /// WireGuard peer addresses, kept for monitors created by later policies.
    peers: Vec<ipnet::IpNet>,
}

impl ExfilShell {
    /// Opens the block maps under `bpffs`; alerts go to `spool`.
    pub fn open(
        policy: &Policy,
        bpffs: &Path,
        spool: EventQueue,
        metrics: Arc<Metrics>,
    ) -> Result<Self, AgentError> {
        let blocks = BlockTable::open(bpffs)?;
        let installed = blocks
            .list()?
            .into_iter()
            .map(|b| ((b.cgroup_id, b.destination), Instant::now() + Duration::from_secs(b.expires_in_secs)))
            .collect();
        Ok(Self {
            monitor: ExfilMonitor::new(policy),
            procs: ProcessIndex::default(),
            blocks,
            installed,
            spool,
            metrics,
            peers: Vec::new(),
        })
    }

    /// Whether the policy in force asks for exfiltration detection.
    pub fn active(&self) -> bool {
        self.monitor.is_some()
    }

    /// Learns which process opened which connection.
    pub fn learn(&mut self, now: Instant, r: &VerdictRecord) {
        if self.monitor.is_some() {
            self.procs.learn(now, r);
        }
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
                m
            }),
        };
    }

    /// One poll of the flow table and the checkpoint directories.
    pub fn poll(&mut self, flows: &FlowTable, geo: Option<&GeoDb>) {
        let started = Instant::now();
        self.sync_blocks(started);
        let Some(monitor) = self.monitor.as_mut() else { return };
        monitor.scan_checkpoints(started);
        let samples = match flows.samples() {
            Ok(s) => s,
            Err(e) => return warn!(error = %e, "exfiltration: reading the flow table"),
        };
        let read = started.elapsed();
        let records = monitor.poll(started, &samples, geo, &self.procs);
        let block_for = monitor.block_for();
        let (flows_tracked, dests) = monitor.tracked();
        for r in &records {
            self.deliver(r);
            if r.action == "block" {
                self.block(r, block_for);
            }
        }
        self.procs.prune(started, false);
        let m = &self.metrics;
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

    fn deliver(&mut self, r: &AlertRecord) {
        warn!(
            target: "ringfence::alert",
            id = %r.id, kind = ?r.kind, severity = ?r.severity, action = r.action,
            pid = r.pid.unwrap_or(0), comm = r.comm.as_deref().unwrap_or(""), cgroup_id = r.cgroup_id,
            destination = %r.destination, port = r.port.unwrap_or(0),
            country = r.country.as_deref().unwrap_or(""), bytes = r.bytes,
            file = %r.file.as_deref().map(|f| f.display().to_string()).unwrap_or_default(),
            unix_ms = r.unix_ms, explanation = %r.explanation,
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
