//! Prometheus metrics, served at `/metrics` in the OpenMetrics text format (prometheus-client).
//!
//! Counters are registered without their `_total` suffix, which the encoder appends to the sample
//! (`ringfence_bundles_served_total 2`); the `# HELP`/`# TYPE` lines name the family without it,
//! as OpenMetrics requires. Node counts and the generation are gauges set from the hub's snapshot
//! at each scrape.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::hub::Snapshot;

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Counters and gauges kept by the server.
#[derive(Debug)]
pub struct Metrics {
    /// Signed bundles sent to agents.
    pub bundles_served: Counter,
    /// Bundle acknowledgements (applied or not).
    pub bundle_acks: Counter,
    /// Policy versions stored (applies and rollbacks).
    pub policies_applied: Counter,
    /// Events stored.
    pub events_ingested: Counter,
    /// Events received again (already stored).
    pub events_duplicate: Counter,
    /// Events forwarded to a sink.
    pub alerts_forwarded: Counter,
    /// Events a sink did not take after every retry.
    pub alerts_failed: Counter,
    /// Nodes enrolled.
    pub enrollments: Counter,
    /// Enrollments refused (bad, used or expired token).
    pub enrollments_refused: Counter,
    /// WireGuard claims refused.
    pub claims_refused: Counter,
    /// Requests refused by a per-node rate limit.
    pub rate_limited: Counter,
    /// Connections refused or closed by the connection limits.
    pub connections_refused: Counter,
    /// Connections closed for idleness or a slow handshake.
    pub connections_timed_out: Counter,
    /// Audit checkpoints delivered to a sink.
    pub checkpoints_sent: Counter,
    /// Audit checkpoint deliveries (or signings) that failed.
    pub checkpoints_failed: Counter,
    /// Starts at which the database did not match the last checkpoint.
    pub checkpoint_mismatch: Counter,
    /// Open connections now.
    pub connections: Gauge,
    /// Open `GET /v1/observe` streams now.
    pub observe_streams: Gauge,
    /// Flows not delivered to an observe stream that fell behind.
    pub observe_lost: Counter,
    /// Allow verdicts received for the live view (`POST /v1/flows`; not stored).
    pub live_flows: Counter,
    /// Allow verdicts agents dropped before delivering them (as they report).
    pub live_flows_dropped: Counter,
    /// Events stored, by kind.
    events_by_kind: Family<Vec<(String, String)>, Counter>,
    /// Per node (set at each scrape): last heard from, certificate expiry, applied policy.
    node_last_seen: Family<Vec<(String, String)>, Gauge>,
    node_cert_expiry: Family<Vec<(String, String)>, Gauge>,
    node_policy: Family<Vec<(String, String)>, Gauge>,
    /// Long-polls waiting now.
    pub watchers: Gauge,
    /// Enrolled, unrevoked nodes (set at each scrape).
    nodes: Gauge,
    /// Revoked nodes (set at each scrape).
    nodes_revoked: Gauge,
    /// The current change generation (set at each scrape).
    generation: Gauge,
    registry: Registry,
}

/// Adds one to a counter.
pub fn inc(counter: &Counter) {
    counter.inc();
}

/// The help text as the registry wants it: it appends the final period itself.
fn help(text: &str) -> &str {
    text.strip_suffix('.').unwrap_or(text)
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Metrics {
            bundles_served: Counter::default(),
            bundle_acks: Counter::default(),
            policies_applied: Counter::default(),
            events_ingested: Counter::default(),
            events_duplicate: Counter::default(),
            alerts_forwarded: Counter::default(),
            alerts_failed: Counter::default(),
            enrollments: Counter::default(),
            enrollments_refused: Counter::default(),
            claims_refused: Counter::default(),
            rate_limited: Counter::default(),
            connections_refused: Counter::default(),
            connections_timed_out: Counter::default(),
            checkpoints_sent: Counter::default(),
            checkpoints_failed: Counter::default(),
            checkpoint_mismatch: Counter::default(),
            connections: Gauge::default(),
            observe_streams: Gauge::default(),
            observe_lost: Counter::default(),
            live_flows: Counter::default(),
            live_flows_dropped: Counter::default(),
            events_by_kind: Family::default(),
            node_last_seen: Family::default(),
            node_cert_expiry: Family::default(),
            node_policy: Family::default(),
            watchers: Gauge::default(),
            nodes: Gauge::default(),
            nodes_revoked: Gauge::default(),
            generation: Gauge::default(),
            registry: Registry::default(),
        };
        m.register();
        m
    }
}

impl Metrics {
    /// Registers every metric, in the order of the exposition.
    fn register(&mut self) {
        let r = &mut self.registry;
        r.register("ringfence_nodes", help("Enrolled, unrevoked nodes."), self.nodes.clone());
        r.register("ringfence_nodes_revoked", help("Revoked nodes."), self.nodes_revoked.clone());
        r.register("ringfence_generation", help("Current change generation."), self.generation.clone());
        let counters = [
            ("ringfence_policies_applied", "Policy versions stored by this replica.", &self.policies_applied),
            ("ringfence_bundles_served", "Signed bundles sent to agents.", &self.bundles_served),
            ("ringfence_bundle_acks", "Bundle acknowledgements received.", &self.bundle_acks),
            ("ringfence_events_ingested", "Events stored.", &self.events_ingested),
            (
                "ringfence_events_duplicate",
                "Events delivered again and not stored twice.",
                &self.events_duplicate,
            ),
            ("ringfence_alerts_forwarded", "Events delivered to a forwarding sink.", &self.alerts_forwarded),
            ("ringfence_alerts_failed", "Events a sink did not take after every retry.", &self.alerts_failed),
            ("ringfence_enrollments", "Nodes enrolled.", &self.enrollments),
            ("ringfence_enrollments_refused", "Enrollments refused.", &self.enrollments_refused),
            ("ringfence_wireguard_claims_refused", "WireGuard claims refused.", &self.claims_refused),
            (
                "ringfence_rate_limited",
                "Requests refused by a per-node rate limit (429).",
                &self.rate_limited,
            ),
            (
                "ringfence_connections_refused",
                "Connections refused or closed by the connection limits.",
                &self.connections_refused,
            ),
            ("ringfence_audit_checkpoints", "Audit checkpoints delivered to a sink.", &self.checkpoints_sent),
            (
                "ringfence_audit_checkpoints_failed",
                "Audit checkpoint deliveries that failed.",
                &self.checkpoints_failed,
            ),
            (
                "ringfence_audit_checkpoint_mismatch",
                "Starts at which the audit log did not contain the last checkpoint.",
                &self.checkpoint_mismatch,
            ),
            (
                "ringfence_live_flows",
                "Allow verdicts received for the live flow view (not stored, not audited).",
                &self.live_flows,
            ),
            (
                "ringfence_live_flows_dropped",
                "Allow verdicts agents dropped before delivering them to the live flow view (as reported).",
                &self.live_flows_dropped,
            ),
            (
                "ringfence_connections_timed_out",
                "Connections closed for idleness or a slow TLS handshake.",
                &self.connections_timed_out,
            ),
        ];
        for (name, text, counter) in counters {
            r.register(name, help(text), counter.clone());
        }
        r.register(
            "ringfence_longpoll_watchers",
            help("Bundle long-polls waiting now."),
            self.watchers.clone(),
        );
        r.register("ringfence_connections", help("Open connections."), self.connections.clone());
        r.register(
            "ringfence_observe_streams",
            help("Open flow streams (GET /v1/observe)."),
            self.observe_streams.clone(),
        );
        r.register(
            "ringfence_observe_lost_events",
            help("Flows not delivered to a flow stream that fell behind."),
            self.observe_lost.clone(),
        );
        r.register(
            "ringfence_events_by_kind",
            help("Events stored, by kind (deny, audit-deny, plaintext-drop, exfiltration...)."),
            self.events_by_kind.clone(),
        );
        let per_node = [
            (
                "ringfence_node_last_seen_timestamp_seconds",
                "When each enrolled node was last heard from (Unix seconds).",
                &self.node_last_seen,
            ),
            (
                "ringfence_node_cert_expiry_timestamp_seconds",
                "When each enrolled node's client certificate expires (Unix seconds).",
                &self.node_cert_expiry,
            ),
            (
                "ringfence_node_applied_policy_version",
                "The policy version each enrolled node applied (0: none yet).",
                &self.node_policy,
            ),
        ];
        for (name, text, family) in per_node {
            r.register(name, help(text), family.clone());
        }
    }

    /// Counts a stored event of `kind`.
    pub fn event_stored(&self, kind: &str) {
        self.events_by_kind.get_or_create(&vec![("kind".to_owned(), kind.to_owned())]).inc();
        self.events_ingested.inc();
    }

    /// The exposition text, with the node and generation gauges taken from `snapshot`.
    pub fn render(&self, snapshot: &Snapshot) -> String {
        let active = snapshot.active_nodes().count();
        self.nodes.set(active as i64);
        self.nodes_revoked.set((snapshot.nodes.len() - active) as i64);
        self.generation.set(snapshot.generation);
        for family in [&self.node_last_seen, &self.node_cert_expiry, &self.node_policy] {
            family.clear();
        }
        for n in snapshot.active_nodes() {
            let i = &n.info;
            let labels =
                vec![("node_id".to_owned(), i.node_id.clone()), ("region".to_owned(), i.region.clone())];
            let seen = i.last_seen_ms.unwrap_or(i.enrolled_ms) / 1000;
            self.node_last_seen.get_or_create(&labels).set(seen);
            self.node_cert_expiry.get_or_create(&labels).set(i.cert_not_after_ms / 1000);
            self.node_policy.get_or_create(&labels).set(i.applied_policy_version.unwrap_or(0) as i64);
        }
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// Counts a waiting long-poll while alive.
pub struct WatcherGuard<'a>(&'a Gauge);

impl<'a> WatcherGuard<'a> {
    /// Counts one more watcher.
    pub fn new(gauge: &'a Gauge) -> Self {
        gauge.inc();
        WatcherGuard(gauge)
    }
}

impl Drop for WatcherGuard<'_> {
    fn drop(&mut self) {
        self.0.dec();
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
