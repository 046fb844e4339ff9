//! `ringfence-agent run`: validate, load, apply, attach, then serve events and reloads until
//! SIGINT or SIGTERM. Stopping leaves the pinned enforcement in place.
use std::{sync::Arc, time::Duration};

use ringfence_common::Event;
use ringfence_policy::{geo::GeoDb, Compiled, Policy};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info, warn};

pub use crate::config::{RunConfig, WgConfig};
use crate::{
    bpf,
    error::AgentError,
    events::{log_record, EventReader, RuleNames},
    exfil::ExfilShell,
    flows::FlowTable,
    geo,
    maps::PinnedMaps,
    metrics::{self, Metrics},
    preflight,
    watch::{Detect, FileWatch},
    wg,
};

/// Everything the loop needs to apply a new policy or database.
struct Enforcer {
    cfg: RunConfig,
    maps: PinnedMaps,
    names: RuleNames,
    policy_watch: FileWatch,
    geo_watch: Vec<FileWatch>,
    geo: Option<GeoDb>,
    generation: u32,
    exfil: ExfilShell,
}

fn log_geo(db: &GeoDb, compiled: &Compiled, what: &str) {
    let i = db.info();
    info!(
        database_type = %i.database_type, build_date = %i.build_date(), networks_v4 = i.networks_v4,
        networks_v6 = i.networks_v6, field = %i.field, geo_entries_v4 = compiled.geo4.len(),
        geo_entries_v6 = compiled.geo6.len(), countries = compiled.countries.len(), "{what}"
    );
}

impl Enforcer {
    /// Tells the packet path about changed WireGuard peer endpoints.
    fn sync_endpoints(&mut self, mesh: &mut wg::Mesh) {
        if let Some(endpoints) = mesh.take_changed_endpoints() {
            match self.maps.set_wg_endpoints(&endpoints) {
                Ok(()) => info!(endpoints = ?endpoints, "packet path: wireguard peer endpoints updated"),
                Err(e) => error!(error = %e, "packet path: updating wireguard peer endpoints failed"),
            }
            // The peers are approved sinks for exfiltration rules that say `peers: true`.
            self.exfil.set_peers(endpoints.iter().map(|e| ipnet::IpNet::from(e.ip())).collect());
        }
    }

    /// Logs and empties a batch of events (and tells the exfiltration monitor who connected).
    fn report(&mut self, batch: &mut Vec<Event>) {
        let now = std::time::Instant::now();
        for ev in batch.drain(..) {
            let record = self.names.record(&ev);
            log_record(&record);
            self.exfil.learn(now, &record);
        }
    }

    /// Writes a compiled policy into the kernel; the previous one stays if that fails.
    fn apply(&mut self, policy: Policy, compiled: &Compiled, trigger: &str) -> bool {
        match self.maps.apply(compiled, &geo::info(self.geo.as_ref(), compiled)) {
            Ok(generation) => {
                self.generation = generation;
                info!(trigger, generation, policy = %policy.name, rules = policy.rules.len(), "policy applied");
                self.exfil.on_policy(&policy);
                self.names.insert(generation, Arc::new(policy));
                true
            }
            Err(e) => {
                error!(trigger, error = %e, "policy could not be written to the kernel; previous slot stays active");
                false
            }
        }
    }

    /// Copies the kernel counters into the metrics registry.
    fn export_counters(&self, m: &Metrics) {
        let Ok(s) = self.maps.stats() else { return };
        let verdicts = [("allowed", s.allowed), ("denied", s.denied), ("audited", s.audited)];
        for (verdict, n) in verdicts {
            m.set_counter(
                "ringfence_connections_total",
                "Connection verdicts, by verdict.",
                &[("verdict", verdict)],
                n,
            );
        }
        let drops = [
            ("policy", s.packets_dropped),
            ("plaintext", s.plaintext_dropped),
            ("exfil_block", s.exfil_blocked),
        ];
        for (reason, n) in drops {
            m.set_counter(
                "ringfence_packets_dropped_total",
                "Packets dropped on the packet path, by reason.",
                &[("reason", reason)],
                n,
            );
        }
        m.set_counter(
            "ringfence_events_dropped_total",
            "Events lost to a full ring buffer.",
            &[],
            s.events_dropped,
        );
        m.set_gauge(
            "ringfence_policy_generation",
            "Generation of the policy in force.",
            &[],
            f64::from(self.generation),
        );
    }

    /// Re-reads the policy file; applies it if valid, otherwise keeps the one in force.
    fn reload(&mut self, trigger: &str) {
        self.policy_watch.mark_seen();
        match preflight::check_policy(&self.cfg.policy, self.geo.as_ref()) {
            Ok((policy, _)) if !preflight::exfil_errors(&policy, &self.cfg, self.geo.as_ref()).is_empty() => {
                let errors = preflight::exfil_errors(&policy, &self.cfg, self.geo.as_ref());
                error!(trigger, generation = self.generation, errors = %errors.join("; "),
                    "policy rejected; the policy in force stays");
            }
            Ok((policy, compiled)) => {
                self.apply(policy, &compiled, trigger);
            }
            Err(errors) => error!(trigger, generation = self.generation, errors = %errors.join("; "),
                "policy rejected; the policy in force stays"),
        }
    }

    /// Re-reads the database; recompiles the policy with it; keeps the old one on any error.
    fn reload_geo(&mut self) {
        self.geo_watch.iter_mut().for_each(FileWatch::mark_seen);
        self.policy_watch.mark_seen();
        let db = match geo::load(&self.cfg) {
            Ok(db) => db,
            Err(e) => return error!(error = %e, "geo database rejected; the database in force stays"),
        };
        match preflight::check_policy(&self.cfg.policy, db.as_ref()) {
            Ok((policy, compiled)) => {
                let old = std::mem::replace(&mut self.geo, db);
                if self.apply(policy, &compiled, "geo database change") {
                    if let Some(db) = &self.geo {
                        log_geo(db, &compiled, "geo database applied");
                    }
                } else {
                    self.geo = old;
                }
            }
            Err(errors) => error!(errors = %errors.join("; "),
                "policy does not compile with the new geo database; the database in force stays"),
        }
    }
}

/// Resolves when SIGINT or SIGTERM arrives.
async fn shutdown_signal() -> &'static str {
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// Runs the preflight checks and the WireGuard checks (if asked for), merging every
/// configuration problem into one report.
fn check_all(
    cfg: &RunConfig,
    wg_cfg: Option<&WgConfig>,
) -> Result<(preflight::Checked, Option<wg::Validated>), AgentError> {
    let wg = wg_cfg.map(wg::check).transpose();
    let checked = preflight::check(cfg);
    match (checked, wg) {
        (Ok(checked), Ok(wg)) => Ok((checked, wg)),
        (Err(AgentError::Config(mut errors)), Err(wg_errors)) => {
            errors.extend(wg_errors);
            Err(AgentError::Config(errors))
        }
        (Err(AgentError::NotRoot(euid)), Err(mut wg_errors)) => {
            wg_errors.push(AgentError::NotRoot(euid).to_string());
            Err(AgentError::Config(wg_errors))
        }
        (Ok(_), Err(wg_errors)) => Err(AgentError::Config(wg_errors)),
        (Err(e), _) => Err(e),
    }
}

pub async fn run(cfg: RunConfig) -> Result<(), AgentError> {
    run_with_wg(cfg, None).await
}

/// `run`, also owning a WireGuard interface when `wg_cfg` is given.
pub async fn run_with_wg(cfg: RunConfig, wg_cfg: Option<WgConfig>) -> Result<(), AgentError> {
    // Signals first, so a SIGHUP sent as soon as we report "enforcing" cannot kill us.
    let mut hup = signal(SignalKind::hangup()).map_err(|e| AgentError::io("signal", "SIGHUP", e))?;
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);

    let (checked, wg_checked) = check_all(&cfg, wg_cfg.as_ref())?;
    let adopted = bpf::has_pinned_links(&cfg.bpffs);
    let mut ebpf = bpf::load(&cfg.bpffs)?;
    let mut maps = PinnedMaps::open(&cfg.bpffs)?;
    let generation = maps.apply(&checked.compiled, &geo::info(checked.geo.as_ref(), &checked.compiled))?;
    bpf::attach_all(&mut ebpf, &checked.cgroup, &cfg.bpffs)?;
    bpf::attach_packet_path(&mut ebpf, &cfg.interfaces, &cfg.bpffs)?;
    drop(ebpf); // the pinned links and maps keep everything alive

    let mut names = RuleNames::default();
    names.insert(generation, Arc::new(checked.policy.clone()));
    if let Some(db) = &checked.geo {
        log_geo(db, &checked.compiled, "geo database loaded");
    }
    info!(
        generation, adopted, policy = %checked.policy.name, mode = ?checked.policy.mode,
        default_action = ?checked.policy.default_action, rules = checked.policy.rules.len(),
        cgroup = %cfg.cgroup.display(), bpffs = %cfg.bpffs.display(),
        interfaces = %cfg.interfaces.join(","), "enforcing"
    );
    let mut mesh = match wg_checked {
        Some(v) => Some(wg::Mesh::start(v).await?),
        None => None,
    };
    let metrics = Arc::new(Metrics::new());
    let (stop_metrics, metrics_stopped) = tokio::sync::watch::channel(false);
    if let Some(addr) = cfg.metrics_listen {
        let listener =
            TcpListener::bind(addr).await.map_err(|e| AgentError::io("bind metrics", addr.to_string(), e))?;
        info!(%addr, "metrics: serving GET /metrics");
        let mut stopped = metrics_stopped.clone();
        tokio::spawn(metrics::serve(listener, metrics.clone(), async move {
            let _ = stopped.changed().await;
        }));
    }
    let exfil = ExfilShell::open(&checked.policy, &cfg.bpffs, &cfg.state_dir, metrics.clone())?;
    if exfil.active() {
        info!(poll_ms = cfg.exfil_poll.as_millis() as u64, "exfiltration detection on");
    }
    let mut exfil_tick = tokio::time::interval(cfg.exfil_poll);
    let mut flow_table = FlowTable::open(&cfg.bpffs)?;
    let mut expire = tokio::time::interval((cfg.flow_idle_timeout / 4).max(Duration::from_millis(100)));

    let mut events = EventReader::open(&cfg.bpffs)?;
    let mut enforcer = Enforcer {
        policy_watch: FileWatch::new(&cfg.policy),
        geo_watch: cfg.geoip_db.iter().map(|p| FileWatch::with(p, Detect::Metadata)).collect(),
        geo: checked.geo,
        cfg,
        maps,
        names,
        generation,
        exfil,
    };
    if let Some(mesh) = mesh.as_mut() {
        enforcer.sync_endpoints(mesh);
    }
    let mut tick = tokio::time::interval(enforcer.cfg.watch_interval);
    // Programs wake us only for a large backlog; drain small batches on this timer.
    let mut drain = tokio::time::interval(Duration::from_millis(ringfence_common::EVENTS_POLL_MS));
    let mut batch = Vec::new();
    let why = loop {
        tokio::select! {
            why = &mut shutdown => break why,
            _ = hup.recv() => {
                enforcer.reload("SIGHUP");
                if let Some(mesh) = mesh.as_mut() {
                    mesh.reload("SIGHUP").await;
                    enforcer.sync_endpoints(mesh);
                }
            }
            _ = tick.tick() => {
                // Evaluate every watch (no short-circuit), so each records what it saw.
                let geo_changed = enforcer.geo_watch.iter_mut().fold(false, |c, w| w.changed() | c);
                if geo_changed {
                    enforcer.reload_geo();
                } else if enforcer.policy_watch.changed() {
                    enforcer.reload("file change");
                }
                if let Some(mesh) = mesh.as_mut() {
                    mesh.poll().await;
                    enforcer.sync_endpoints(mesh);
                }
            }
            r = events.read(&mut batch) => {
                if let Err(e) = r { warn!(error = %e, "reading events"); }
                enforcer.report(&mut batch);
            }
            _ = expire.tick() => match flow_table.expire(enforcer.cfg.flow_idle_timeout) {
                Ok(0) => {}
                Ok(n) => tracing::debug!(flows = n, "expired idle flows"),
                Err(e) => warn!(error = %e, "expiring idle flows"),
            },
            _ = drain.tick() => {
                events.drain(&mut batch);
                enforcer.report(&mut batch);
            }
            _ = exfil_tick.tick() => {
                // Attribute the newest connections before looking at their bytes.
                events.drain(&mut batch);
                enforcer.report(&mut batch);
                enforcer.exfil.poll(&flow_table, enforcer.geo.as_ref());
                enforcer.export_counters(&metrics);
            }
        }
    };
    let _ = stop_metrics.send(true);
    // Drain what the kernel already queued, bounded by the grace period.
    let deadline = tokio::time::Instant::now() + enforcer.cfg.grace;
    loop {
        events.drain(&mut batch);
        if batch.is_empty() || tokio::time::Instant::now() >= deadline {
            break;
        }
        enforcer.report(&mut batch);
    }
    if let Ok(stats) = enforcer.maps.stats() {
        info!(
            allowed = stats.allowed,
            denied = stats.denied,
            audited = stats.audited,
            events_dropped = stats.events_dropped,
            "counters"
        );
    }
    info!(signal = why, bpffs = %enforcer.cfg.bpffs.display(),
        "stopping; enforcement stays pinned (run `ringfence-agent detach` to remove it)");
    if let Some(mesh) = &mesh {
        info!(interface = %mesh.interface(),
            "WireGuard interface stays up (run `ringfence-agent wg down --wg-interface NAME` to remove it)");
    }
    Ok(())
}
