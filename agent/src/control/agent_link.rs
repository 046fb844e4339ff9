//! The types [`run_sync`](super::sync::run_sync) and the agent share: its timings, the
//! channels between them, the agent's answer to a bundle, the node's report.
use std::sync::Arc;
use std::time::Duration;

use ringfence_proto::api::NodeReport;
use ringfence_proto::Bundle;
use tokio::sync::{mpsc, Notify};

use crate::spool::EventQueue;

/// Timings of [`run_sync`](super::sync::run_sync).
#[derive(Clone, Debug)]
pub struct SyncOptions {
    /// Long-poll wait (the control plane caps it, default 60 s).
    pub poll_wait: Duration,
    /// Interval of reports.
    pub report_every: Duration,
    /// Interval of event uploads (besides notifications).
    pub events_every: Duration,
    /// Most events per upload (the control plane takes up to 1000).
    pub events_batch: usize,
    /// First retry delay after an error.
    pub backoff_min: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
}

impl Default for SyncOptions {
    fn default() -> Self {
        SyncOptions {
            poll_wait: Duration::from_secs(30),
            report_every: Duration::from_secs(30),
            events_every: Duration::from_secs(1),
            events_batch: 500,
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// The agent's answer to a bundle it received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplyResult {
    /// The bundle's version.
    pub bundle_version: u64,
    /// `None`: now in force. `Some(why)`: not applied; the previous bundle stays in force.
    pub error: Option<String>,
}

impl ApplyResult {
    /// The bundle is in force.
    pub fn applied(bundle: &Bundle) -> ApplyResult {
        ApplyResult { bundle_version: bundle.version, error: None }
    }

    /// The bundle could not be applied.
    pub fn failed(bundle: &Bundle, error: impl Into<String>) -> ApplyResult {
        ApplyResult { bundle_version: bundle.version, error: Some(error.into()) }
    }
}

/// The node's state for reports: called before each report; the applied versions (and the
/// agent version, if left `None`) are filled in by [`run_sync`](super::sync::run_sync).
pub type ReportFn = Arc<dyn Fn() -> NodeReport + Send + Sync>;

/// [`run_sync`](super::sync::run_sync)'s side of the channels with the agent.
pub struct AgentLink {
    /// Verified bundles, in order; the agent answers each on `results`.
    pub bundles: mpsc::Sender<Bundle>,
    /// The agent's answers.
    pub results: mpsc::Receiver<ApplyResult>,
    /// The alert spool, if the agent keeps one.
    pub events: Option<EventQueue>,
    /// The node's state for reports.
    pub report: ReportFn,
    /// Wakes the report loop when the node's state changed (e.g. its workloads).
    pub report_now: Arc<Notify>,
}

/// The agent's side: receive a [`Bundle`], apply it, answer with an [`ApplyResult`].
pub struct AgentEnd {
    /// Bundles to apply.
    pub bundles: mpsc::Receiver<Bundle>,
    /// Answers.
    pub results: mpsc::Sender<ApplyResult>,
    /// Asks for a report soon (the node's state changed).
    pub report_now: Arc<Notify>,
}

/// Both ends of the channels between [`run_sync`](super::sync::run_sync) and the agent.
pub fn link(events: Option<EventQueue>, report: ReportFn) -> (AgentLink, AgentEnd) {
    let (bundle_tx, bundle_rx) = mpsc::channel(1);
    let (result_tx, result_rx) = mpsc::channel(1);
    let report_now = Arc::new(Notify::new());
    let link =
        AgentLink { bundles: bundle_tx, results: result_rx, events, report, report_now: report_now.clone() };
    (link, AgentEnd { bundles: bundle_rx, results: result_tx, report_now })
}

/// The bundle and policy versions in force (for reports).
pub(crate) type Applied = (Option<u64>, Option<u64>);
