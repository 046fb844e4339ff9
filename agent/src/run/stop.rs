//! `run`, step 5: stopping. The control-plane sync and the metrics endpoint stop, queued events
//! are drained within the grace period, the counters are logged. Enforcement stays pinned.
use tracing::info;

use super::start::Running;

/// Stops after `why` (the signal's name).
pub(super) async fn stop(r: Running, why: &'static str) {
    let Running { mut enforcer, mesh, remote, mut events, stop_metrics, .. } = r;
    let _ = stop_metrics.send(true);
    if let Some(r) = remote {
        r.stop().await;
    }
    // Drain what the kernel already queued, bounded by the grace period.
    let mut batch = Vec::new();
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
}
