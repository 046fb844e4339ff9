//! `run`, step 4: the event loop. Events are logged (and spooled under a control plane), the
//! policy and geo database are reloaded on SIGHUP or when their files change, bundles are applied
//! as they come, the exfiltration detector polls the flow counters; until SIGINT or SIGTERM.
use std::{future::Future, pin::Pin, time::Duration};

use ringfence_proto::bundle::Bundle;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing::warn;

use super::start::{geo_version, Running};
use crate::{enforcer::Enforcer, remote::BundleUpdate, remote::Remote, watch::FileWatch, wg};

/// Resolves when SIGINT or SIGTERM arrives.
pub(super) async fn shutdown_signal() -> &'static str {
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

/// Serves until `shutdown` resolves; returns its signal's name.
pub(super) async fn serve(
    r: &mut Running,
    hup: &mut Signal,
    mut shutdown: Pin<&mut impl Future<Output = &'static str>>,
) -> &'static str {
    let Running { enforcer, mesh, remote, events, flow_table, metrics, .. } = r;
    let mut exfil_tick = tokio::time::interval(enforcer.cfg.exfil_poll);
    let mut expire =
        tokio::time::interval((enforcer.cfg.flow_idle_timeout / 4).max(Duration::from_millis(100)));
    let mut tick = tokio::time::interval(enforcer.cfg.watch_interval);
    // Programs wake us only for a large backlog; drain small batches on this timer.
    let mut drain = tokio::time::interval(Duration::from_millis(ringfence_common::EVENTS_POLL_MS));
    let mut batch = Vec::new();
    // Off unless `--selftest-every` (the first tick comes at once: a run at start-up).
    let mut selftest = enforcer.cfg.selftest_every.map(tokio::time::interval);
    // Under a control plane with a mesh: the peers' handshakes for its inventory.
    let mut peer_status =
        (mesh.is_some() && remote.is_some()).then(|| tokio::time::interval(PEER_STATUS_EVERY));
    loop {
        tokio::select! {
            why = &mut shutdown => return why,
            _ = hup.recv() => {
                let _ = enforcer.reload("SIGHUP");
                enforcer.reload_workload_policies("SIGHUP");
                // The node default's name is what unselected workloads report.
                report_workloads(remote, enforcer);
                if let Some(mesh) = mesh.as_mut() {
                    mesh.reload("SIGHUP").await;
                    enforcer.sync_endpoints(mesh);
                }
            }
            _ = tick.tick() => {
                // Evaluate every watch (no short-circuit), so each records what it saw.
                let geo_changed = enforcer.geo_watch.iter_mut().fold(false, |c, w| w.changed() | c);
                let mut relabelled = false;
                if geo_changed {
                    enforcer.reload_geo();
                    relabelled |= enforcer.reload_workload_policies("geo database change");
                } else if enforcer.policy_watch.as_mut().is_some_and(FileWatch::changed) {
                    relabelled |= enforcer.reload("file change").is_ok();
                }
                if enforcer.workload_policy_watch.iter_mut().fold(false, |c, w| w.changed() | c) {
                    relabelled |= enforcer.reload_workload_policies("file change");
                }
                if relabelled {
                    report_workloads(remote, enforcer);
                }
                if let Some(mesh) = mesh.as_mut() {
                    mesh.poll().await;
                    enforcer.sync_endpoints(mesh);
                }
            }
            wake = next_workload_change(&mut enforcer.workloads) => {
                if enforcer.on_workloads(wake) {
                    report_workloads(remote, enforcer);
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
            Some(b) = next_bundle(remote) => {
                let r = remote.as_mut().expect("a bundle comes from the remote");
                if enforcer.workloads.is_none() {
                    r.warn_no_cgroup_root(&b);
                }
                let result = apply_bundle(enforcer, mesh.as_mut(), &b).await;
                if result.is_ok() {
                    r.record_peers(&b);
                    r.report.lock().expect("report lock").geo_db_version = geo_version(enforcer.geo.as_ref());
                    r.set_workloads(enforcer.workload_report());
                }
                r.answer(&b, result).await;
            }
            _ = async { selftest.as_mut().expect("checked by the guard").tick().await }, if selftest.is_some() => {
                let cfg = &enforcer.cfg;
                let queue = enforcer.exfil.queue();
                let (bpffs, cgroup, state) = (cfg.bpffs.clone(), cfg.cgroup.clone(), cfg.state_dir.clone());
                crate::selftest::schedule::spawn(bpffs, cgroup, state, metrics.clone(), queue);
            }
            _ = async { peer_status.as_mut().expect("checked by the guard").tick().await }, if peer_status.is_some() => {
                report_peer_status(remote, mesh);
            }
            _ = exfil_tick.tick() => {
                // Attribute the newest connections before looking at their bytes.
                events.drain(&mut batch);
                enforcer.report(&mut batch);
                let maps = &enforcer.maps;
                let learned_sink = |a| maps.learned_sink(ringfence_common::DEFAULT_POLICY, a);
                enforcer.exfil.poll(flow_table, enforcer.geo.as_ref(), &learned_sink);
                enforcer.export_counters(metrics);
            }
        }
    }
}

/// How often the WireGuard peers' handshakes are read for the control plane.
const PEER_STATUS_EVERY: Duration = Duration::from_secs(5);

/// Tells the control plane the WireGuard peers' last handshakes (a failed read is logged).
fn report_peer_status(remote: &Option<Remote>, mesh: &Option<crate::wg::Mesh>) {
    let (Some(r), Some(m)) = (remote.as_ref(), mesh.as_ref()) else { return };
    match m.peer_status() {
        Ok(peers) => r.set_wireguard_peers(peers),
        Err(e) => warn!(error = %e, interface = m.interface(), "reading the WireGuard peers' handshakes"),
    }
}

/// Tells the control plane (if any) the node's workloads, after they or their policies changed.
fn report_workloads(remote: &Option<Remote>, enforcer: &Enforcer) {
    if let Some(r) = remote.as_ref() {
        r.set_workloads(enforcer.workload_report());
    }
}

/// The next possible change of the workload cgroups (never, without `--cgroup-root`).
async fn next_workload_change(tracker: &mut Option<crate::workloads::Tracker>) -> crate::workloads::Wake {
    match tracker {
        Some(t) => t.next().await,
        None => std::future::pending().await,
    }
}

/// The next bundle from the control plane (never, without one).
async fn next_bundle(remote: &mut Option<Remote>) -> Option<Bundle> {
    match remote {
        Some(r) => r.next().await,
        None => std::future::pending().await,
    }
}

/// Puts a control-plane bundle in force: its policy through the one load path, then (under
/// `--cgroup-root`) its workload policies beside the `--workload-policy` files, then its peers
/// on the mesh (unless the mesh follows a `--wg-peers` file, which is re-read instead). The
/// workload policies are loaded and checked before anything is applied, so a bundle whose
/// workload policies fail leaves everything in force.
async fn apply_bundle(
    enforcer: &mut Enforcer,
    mesh: Option<&mut wg::Mesh>,
    b: &Bundle,
) -> Result<(), String> {
    let trigger = format!("control plane bundle {}", b.version);
    let update = BundleUpdate::of(b)?;
    let workload_policies = match &enforcer.cfg.workloads {
        Some(w) if enforcer.workloads.is_some() => {
            let sources = update.workload_sources(&w.policies);
            Some(enforcer.load_workload_policies(&sources, &update.workloads.remote, &trigger)?)
        }
        _ => None,
    };
    enforcer.switch(update.loader(&enforcer.loader, mesh.is_some()), &trigger)?;
    if let Some(policies) = workload_policies {
        enforcer.install_workload_policies(policies, &trigger)?;
    }
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
