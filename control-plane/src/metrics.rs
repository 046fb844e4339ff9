//! Prometheus metrics (text exposition format), served at `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::hub::Snapshot;

/// Counters and gauges kept by the server.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Signed bundles sent to agents.
    pub bundles_served: AtomicU64,
    /// Bundle acknowledgements (applied or not).
    pub bundle_acks: AtomicU64,
    /// Policy versions stored (applies and rollbacks).
    pub policies_applied: AtomicU64,
    /// Events stored.
    pub events_ingested: AtomicU64,
    /// Events received again (already stored).
    pub events_duplicate: AtomicU64,
    /// Events forwarded to a sink.
    pub alerts_forwarded: AtomicU64,
    /// Events a sink did not take after every retry.
    pub alerts_failed: AtomicU64,
    /// Nodes enrolled.
    pub enrollments: AtomicU64,
    /// Enrollments refused (bad, used or expired token).
    pub enrollments_refused: AtomicU64,
    /// WireGuard claims refused.
    pub claims_refused: AtomicU64,
    /// Requests refused by a per-node rate limit.
    pub rate_limited: AtomicU64,
    /// Connections refused or closed by the connection limits.
    pub connections_refused: AtomicU64,
    /// Connections closed for idleness or a slow handshake.
    pub connections_timed_out: AtomicU64,
    /// Audit checkpoints delivered to a sink.
    pub checkpoints_sent: AtomicU64,
    /// Audit checkpoint deliveries (or signings) that failed.
    pub checkpoints_failed: AtomicU64,
    /// Starts at which the database did not match the last checkpoint.
    pub checkpoint_mismatch: AtomicU64,
    /// Open connections now.
    pub connections: AtomicI64,
    /// Long-polls waiting now.
    pub watchers: AtomicI64,
}

/// Adds one to a counter.
pub fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
}

impl Metrics {
    /// The exposition text.
    pub fn render(&self, snapshot: &Snapshot) -> String {
        let mut out = String::new();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let active = snapshot.active_nodes().count();
        metric(&mut out, "ringfence_nodes", "gauge", "Enrolled, unrevoked nodes.", active);
        metric(&mut out, "ringfence_nodes_revoked", "gauge", "Revoked nodes.", snapshot.nodes.len() - active);
        metric(&mut out, "ringfence_generation", "gauge", "Current change generation.", snapshot.generation);
        let c = [
            (
                "ringfence_policies_applied_total",
                "Policy versions stored by this replica.",
                get(&self.policies_applied),
            ),
            ("ringfence_bundles_served_total", "Signed bundles sent to agents.", get(&self.bundles_served)),
            ("ringfence_bundle_acks_total", "Bundle acknowledgements received.", get(&self.bundle_acks)),
            ("ringfence_events_ingested_total", "Events stored.", get(&self.events_ingested)),
            (
                "ringfence_events_duplicate_total",
                "Events delivered again and not stored twice.",
                get(&self.events_duplicate),
            ),
            (
                "ringfence_alerts_forwarded_total",
                "Events delivered to a forwarding sink.",
                get(&self.alerts_forwarded),
            ),
            (
                "ringfence_alerts_failed_total",
                "Events a sink did not take after every retry.",
                get(&self.alerts_failed),
            ),
            ("ringfence_enrollments_total", "Nodes enrolled.", get(&self.enrollments)),
            ("ringfence_enrollments_refused_total", "Enrollments refused.", get(&self.enrollments_refused)),
            (
                "ringfence_wireguard_claims_refused_total",
                "WireGuard claims refused.",
                get(&self.claims_refused),
            ),
            (
                "ringfence_rate_limited_total",
                "Requests refused by a per-node rate limit (429).",
                get(&self.rate_limited),
            ),
            (
                "ringfence_connections_refused_total",
                "Connections refused or closed by the connection limits.",
                get(&self.connections_refused),
            ),
            (
                "ringfence_audit_checkpoints_total",
                "Audit checkpoints delivered to a sink.",
                get(&self.checkpoints_sent),
            ),
            (
                "ringfence_audit_checkpoints_failed_total",
                "Audit checkpoint deliveries that failed.",
                get(&self.checkpoints_failed),
            ),
            (
                "ringfence_audit_checkpoint_mismatch_total",
                "Starts at which the audit log did not contain the last checkpoint.",
                get(&self.checkpoint_mismatch),
            ),
            (
                "ringfence_connections_timed_out_total",
                "Connections closed for idleness or a slow TLS handshake.",
                get(&self.connections_timed_out),
            ),
        ];
        for (name, help, value) in c {
            metric(&mut out, name, "counter", help, value);
        }
        metric(
            &mut out,
            "ringfence_longpoll_watchers",
            "gauge",
            "Bundle long-polls waiting now.",
            self.watchers.load(Ordering::Relaxed),
        );
        metric(
            &mut out,
            "ringfence_connections",
            "gauge",
            "Open connections.",
            self.connections.load(Ordering::Relaxed),
        );
        out
    }
}

/// Counts a waiting long-poll while alive.
pub struct WatcherGuard<'a>(&'a AtomicI64);

impl<'a> WatcherGuard<'a> {
    /// Counts one more watcher.
    pub fn new(gauge: &'a AtomicI64) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        WatcherGuard(gauge)
    }
}

impl Drop for WatcherGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_gauges() {
        let m = Metrics::default();
        inc(&m.bundles_served);
        inc(&m.bundles_served);
        let guard = WatcherGuard::new(&m.watchers);
        let text = m.render(&Snapshot::default());
        assert!(text.contains("\nringfence_bundles_served_total 2\n"), "{text}");
        assert!(text.contains("\nringfence_longpoll_watchers 1\n"), "{text}");
        assert!(text.contains("# TYPE ringfence_nodes gauge\nringfence_nodes 0\n"), "{text}");
        drop(guard);
        assert!(m.render(&Snapshot::default()).contains("\nringfence_longpoll_watchers 0\n"));
    }
}
