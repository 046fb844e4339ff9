//! `ringfence-agent run`: validate, load, apply, attach, then serve events and reloads until
//! SIGINT or SIGTERM. Stopping leaves the pinned enforcement in place.
use std::{path::Path, sync::Arc, time::Duration};

use ipnet::IpNet;
use ringfence_proto::bundle::Bundle;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{info, warn};

pub use crate::config::{RunConfig, WgConfig};
use crate::{
    bpf,
    enforcer::{log_geo, Enforcer},
    error::AgentError,
    events::{EventReader, RuleNames},
    exfil::ExfilShell,
    flows::FlowTable,
    geo,
    maps::PinnedMaps,
    metrics::{self, Metrics},
    policy_load::{PolicyLoader, PolicySource},
    preflight,
    remote::{BundleUpdate, Remote},
    spool::EventQueue,
    watch::{Detect, FileWatch},
    wg::{self, peers::Peer},
};

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
    loader: &PolicyLoader,
    wg_cfg: Option<&WgConfig>,
) -> Result<(preflight::Checked, Option<wg::Validated>), AgentError> {
    let wg = wg_cfg.map(wg::check).transpose();
    let checked = preflight::check(cfg, loader);
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

/// The durable event spool in the state directory, shared by the exfiltration shell (and the
/// enforcer, under a control plane) with the control-plane uploader.
fn open_queue(state_dir: &Path) -> Result<EventQueue, AgentError> {
    EventQueue::open(state_dir).map_err(|e| AgentError::Config(vec![format!("event spool: {e}")]))
}

/// The next bundle from the control plane (never, without one).
async fn next_bundle(remote: &mut Option<Remote>) -> Option<Bundle> {
    match remote {
        Some(r) => r.next().await,
        None => std::future::pending().await,
    }
}

/// What the node reports about its geo database: type and build date.
fn geo_version(db: Option<&ringfence_policy::geo::GeoDb>) -> Option<String> {
    db.map(|db| format!("{} {}", db.info().database_type, db.info().build_date()))
}

/// The policy's loader: the `--policy` file, or under a control plane the bundle in force, and
/// that bundle's WireGuard peers. While this node runs the mesh, the peers' addresses join the
/// policy's `spec.peers`.
fn initial_policy(
    cfg: &RunConfig,
    remote: Option<&Remote>,
    mesh: bool,
) -> Result<(PolicyLoader, Option<Vec<Peer>>), AgentError> {
    let Some(r) = remote else {
        let path = cfg
            .policy
            .clone()
            .ok_or_else(|| AgentError::Config(vec!["give --policy FILE or --control".into()]))?;
        return Ok((PolicyLoader::new(PolicySource::File(path), cfg, Vec::new()), None));
    };
    let update = BundleUpdate::of(&r.initial).map_err(|e| AgentError::Config(vec![e]))?;
    let loader = update.loader(&PolicyLoader::new(update.source.clone(), cfg, Vec::new()), mesh);
    Ok((loader, Some(update.peers)))
}

/// Puts a control-plane bundle in force: its policy through the one load path, then its peers
/// on the mesh (unless the mesh follows a `--wg-peers` file, which is re-read instead).
async fn apply_bundle(
    enforcer: &mut Enforcer,
    mesh: Option<&mut wg::Mesh>,
    b: &Bundle,
) -> Result<(), String> {
    let trigger = format!("control plane bundle {}", b.version);
    let update = BundleUpdate::of(b)?;
    enforcer.switch(update.loader(&enforcer.loader, mesh.is_some()), &trigger)?;
    if let Some(mesh) = mesh {
        if mesh.follows_file() {
            mesh.reload(&trigger).await;
        } else {
            mesh.set_peers(&update.peers, &trigger).await;
        }
        enforcer.sync_endpoints(mesh);
    }
    Ok(())
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

    // Under a control plane the policy comes from the last good bundle (or the first one).
    let early_queue = if cfg.control { Some(open_queue(&cfg.state_dir)?) } else { None };
    let mut remote = match &early_queue {
        Some(q) => Some(Remote::start(&cfg.state_dir, Some(q.clone())).await?),
        None => None,
    };
    let checked = initial_policy(&cfg, remote.as_ref(), wg_cfg.is_some()).and_then(|(loader, peers)| {
        let (checked, mut wg_checked) = check_all(&cfg, &loader, wg_cfg.as_ref())?;
        if let (Some(v), Some(peers)) = (wg_checked.as_mut(), peers) {
            // Without a peers file the mesh's peers are the bundle's.
            if v.cfg.peers_file.is_none() {
                v.peers = peers;
            }
        }
        Ok((loader, checked, wg_checked))
    });
    let (loader, checked, wg_checked) = match checked {
        Ok(c) => c,
        Err(e) => {
            if let Some(r) = remote.as_mut() {
                r.started(Err(e.to_string())).await;
            }
            return Err(e);
        }
    };
    let adopted = bpf::has_pinned_links(&cfg.bpffs);
    let mut ebpf = bpf::load(&cfg.bpffs)?;
    let mut maps = PinnedMaps::open(&cfg.bpffs)?;
    // The policy is in the maps before the first hook is attached.
    let generation = maps.apply(&checked.compiled, &geo::info(checked.geo.as_ref(), &checked.compiled))?;
    let isolation =
        bpf::Isolation { packet_path: !cfg.interfaces.is_empty(), allow_weaker: cfg.allow_weaker_isolation };
    let hooks = bpf::attach_all(&mut ebpf, &checked.cgroup, &cfg.bpffs, isolation)?;
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
        interfaces = %cfg.interfaces.join(","), packet_sockets = hooks.packet_sockets.as_str(),
        backstop_attached_ns = hooks.backstop_attached_ns,
        raw_sockets = checked.policy.raw_sockets.as_str(), "enforcing"
    );
    crate::notify::notify(&format!("READY=1\nSTATUS=enforcing generation {generation}"));
    if let (Some(r), Some(v)) = (&remote, &wg_checked) {
        r.report.lock().expect("report lock").wireguard = Some(ringfence_proto::api::WireGuardInfo {
            public_key: wg::pubkey(&v.cfg.state_dir)?,
            endpoint: v.cfg.endpoint.clone(),
            allowed_ips: v.addresses.iter().map(|a| IpNet::from(a.addr()).to_string()).collect(),
        });
    }
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
    let queue = match &early_queue {
        Some(q) => q.clone(),
        None => open_queue(&cfg.state_dir)?,
    };
    let exfil =
        ExfilShell::open(&checked.policy, &cfg.bpffs, &cfg.state_dir, queue.clone(), metrics.clone())?;
    if let Some(r) = remote.as_mut() {
        r.report.lock().expect("report lock").geo_db_version = geo_version(checked.geo.as_ref());
        r.record_peers(&r.initial);
        r.started(Ok(())).await;
    }
    if exfil.active() {
        info!(poll_ms = cfg.exfil_poll.as_millis() as u64, "exfiltration detection on");
    }
    let mut exfil_tick = tokio::time::interval(cfg.exfil_poll);
    let mut flow_table = FlowTable::open(&cfg.bpffs)?;
    let mut expire = tokio::time::interval((cfg.flow_idle_timeout / 4).max(Duration::from_millis(100)));

    let mut events = EventReader::open(&cfg.bpffs)?;
    let mut enforcer = Enforcer {
        policy_watch: match &loader.source {
            PolicySource::File(path) => Some(FileWatch::new(path)),
            PolicySource::Bundle { .. } => None,
        },
        geo_watch: cfg.geoip_db.iter().map(|p| FileWatch::with(p, Detect::Metadata)).collect(),
        geo: checked.geo,
        cfg,
        loader,
        maps,
        names,
        generation,
        exfil,
        verdicts: early_queue.map(crate::control::VerdictLane::new),
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
                let _ = enforcer.reload("SIGHUP");
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
                } else if enforcer.policy_watch.as_mut().is_some_and(FileWatch::changed) {
                    let _ = enforcer.reload("file change");
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
            Some(b) = next_bundle(&mut remote) => {
                let r = remote.as_mut().expect("a bundle comes from the remote");
                let result = apply_bundle(&mut enforcer, mesh.as_mut(), &b).await;
                if result.is_ok() {
                    r.record_peers(&b);
                    r.report.lock().expect("report lock").geo_db_version = geo_version(enforcer.geo.as_ref());
                }
                r.answer(&b, result).await;
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
    if let Some(r) = remote {
        r.stop().await;
    }
    // Drain what the kernel already queued, bounded by the grace period.
    let deadline = tokio::time::Instant::now() + enforcer.cfg.grace;
    loop {
        events.drain(&mut batch);
        if batch.is_empty() || tokio::time::Instant::now() >= deadline {
            break;
        }
        enforcer.report(&mut batch);
    }
    crate::notify::notify("STOPPING=1");
    if let Ok(s) = enforcer.maps.stats() {
        info!(
            allowed = s.allowed,
            denied = s.denied,
            audited = s.audited,
            events_dropped = s.events_dropped,
            packets_dropped = s.packets_dropped,
            backstop_dropped = s.backstop_dropped,
            backstop_decided = s.backstop_decided,
            plaintext_dropped = s.plaintext_dropped,
            exfil_blocked = s.exfil_blocked,
            sockets_refused = s.sockets_refused,
            nonip_dropped = s.nonip_dropped,
            socket_guard_seen = s.socket_guard_seen,
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
