//! [`run_sync`]: the agent's long-running exchange with the control plane.
//!
//! Four loops in one future (spawn it with `tokio::spawn`; it is `Send`):
//! - bundles: long-poll `GET /v1/bundle?after=V&wait=30`, verify ([`BundleStore::verify`]), hand
//!   the [`Bundle`] to the agent on [`AgentLink::bundles`], wait for its [`ApplyResult`], then
//!   persist it as the last good bundle (only if applied) and `POST /v1/ack`;
//! - certificate renewal once less than a third of the certificate's lifetime is left;
//! - `POST /v1/report` at start, every 30 s and after each apply;
//! - event upload from the alert spool every second or when notified (see [`super::periodic`]).
//!
//! Errors never stop the loops: each retries with a jittered backoff (1 s doubling to 30 s) and
//! logs what is wrong. The future returns once `shutdown` turns true (or its sender is dropped),
//! or when the agent drops its end of the channels.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ringfence_proto::api::{BundleAck, NodeReport};
use ringfence_proto::{Bundle, SignedBundle};
use tokio::sync::{mpsc, watch, Notify};

use super::periodic::{renew_loop, report_loop, Backoff};
use super::upload::events_loop;
use super::{BundleStore, ControlClient};
use crate::exfil::Spool;

/// Timings of [`run_sync`].
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
/// agent version, if left `None`) are filled in by [`run_sync`].
pub type ReportFn = Arc<dyn Fn() -> NodeReport + Send + Sync>;

/// The event spools to upload, shared with the code that appends to them. Call
/// `notify.notify_one()` after appending to upload at once instead of within a second.
///
/// Two lanes, each its own spool with its own size cap: alerts (exfiltration alerts, plaintext
/// drops), uploaded first, and denials, which can never evict an alert.
#[derive(Clone)]
pub struct EventQueue {
    /// The alert lane (locked briefly, from a blocking thread).
    pub spool: Arc<Mutex<Spool>>,
    /// The denial lane.
    pub denials: Arc<Mutex<Spool>>,
    /// Wakes the uploader.
    pub notify: Arc<Notify>,
}

/// The denial lane's directory inside the state directory (the alert lane is `spool/`).
pub const DENIAL_SPOOL_DIR: &str = "spool-denials";

impl EventQueue {
    /// Opens both lanes in `state_dir`: `spool/` (alerts, 256 MiB) and `spool-denials/` (64 MiB).
    pub fn open(state_dir: &std::path::Path) -> Result<EventQueue, crate::exfil::SpoolError> {
        use crate::exfil::{shell::SPOOL_DIR, SpoolLimits};
        let alerts = Spool::open(&state_dir.join(SPOOL_DIR), SpoolLimits::default())?;
        let limits = SpoolLimits { max_total_bytes: 64 << 20, ..SpoolLimits::default() };
        let denials = Spool::open(&state_dir.join(DENIAL_SPOOL_DIR), limits)?;
        Ok(EventQueue {
            spool: Arc::new(Mutex::new(alerts)),
            denials: Arc::new(Mutex::new(denials)),
            notify: Arc::new(Notify::new()),
        })
    }
}

/// [`run_sync`]'s side of the channels with the agent.
pub struct AgentLink {
    /// Verified bundles, in order; the agent answers each on `results`.
    pub bundles: mpsc::Sender<Bundle>,
    /// The agent's answers.
    pub results: mpsc::Receiver<ApplyResult>,
    /// The alert spool, if the agent keeps one.
    pub events: Option<EventQueue>,
    /// The node's state for reports.
    pub report: ReportFn,
}

/// The agent's side: receive a [`Bundle`], apply it, answer with an [`ApplyResult`].
pub struct AgentEnd {
    /// Bundles to apply.
    pub bundles: mpsc::Receiver<Bundle>,
    /// Answers.
    pub results: mpsc::Sender<ApplyResult>,
}

/// Both ends of the channels between [`run_sync`] and the agent.
pub fn link(events: Option<EventQueue>, report: ReportFn) -> (AgentLink, AgentEnd) {
    let (bundle_tx, bundle_rx) = mpsc::channel(1);
    let (result_tx, result_rx) = mpsc::channel(1);
    let link = AgentLink { bundles: bundle_tx, results: result_rx, events, report };
    (link, AgentEnd { bundles: bundle_rx, results: result_tx })
}

/// The bundle and policy versions in force (for reports).
pub(crate) type Applied = (Option<u64>, Option<u64>);

/// Runs until shutdown; see the module documentation. `store` should have been loaded
/// ([`BundleStore::load_last`]) and its bundle applied by the agent before.
pub async fn run_sync(
    client: ControlClient,
    store: BundleStore,
    opts: SyncOptions,
    link: AgentLink,
    shutdown: watch::Receiver<bool>,
) {
    let applied = store.last().map(|b| (Some(b.version), Some(b.policy_version))).unwrap_or((None, None));
    let (applied_tx, applied_rx) = watch::channel(applied);
    let AgentLink { bundles, results, events, report } = link;
    let poll = bundle_loop(&client, store, &opts, bundles, results, applied_tx, shutdown.clone());
    let renew = renew_loop(&client, &opts, shutdown.clone());
    let reports = report_loop(&client, &opts, report, applied_rx, shutdown.clone());
    let uploads = async {
        if let Some(queue) = events {
            events_loop(&client, &opts, queue, shutdown.clone()).await;
        }
    };
    // The bundle loop also ends when the agent goes away: then stop everything.
    tokio::select! {
        _ = poll => {}
        _ = async { tokio::join!(renew, reports, uploads) } => {}
    }
}

/// Waits for shutdown (true, or the sender gone).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// `fut`'s output, or `None` if shutdown comes first.
pub(crate) async fn unless_stopped<T>(
    shutdown: &mut watch::Receiver<bool>,
    fut: impl Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        biased;
        _ = stopped(shutdown) => None,
        value = fut => Some(value),
    }
}

/// Sleeps `d`; false if shutdown came first.
pub(crate) async fn sleep(shutdown: &mut watch::Receiver<bool>, d: Duration) -> bool {
    unless_stopped(shutdown, tokio::time::sleep(d)).await.is_some()
}

/// An acknowledgement refusing a bundle that did not verify (its numbers read unverified, for
/// the operator's inventory only).
fn refusal_ack(signed: &SignedBundle, why: String) -> Option<BundleAck> {
    let bundle: serde_json::Value = serde_json::from_str(&signed.bundle_json).ok()?;
    let number = |k: &str| bundle.get(k).and_then(serde_json::Value::as_u64);
    Some(BundleAck {
        bundle_version: number("version")?,
        policy_version: number("policy_version")?,
        applied: false,
        error: Some(why),
    })
}

async fn bundle_loop(
    client: &ControlClient,
    mut store: BundleStore,
    opts: &SyncOptions,
    to_agent: mpsc::Sender<Bundle>,
    mut results: mpsc::Receiver<ApplyResult>,
    applied: watch::Sender<Applied>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new(opts);
    let mut after = store.poll_after();
    let mut ack: Option<BundleAck> = None;
    let mut last_refused = None;
    loop {
        if let Some(pending) = &ack {
            match unless_stopped(&mut shutdown, client.ack(pending)).await {
                None => return,
                Some(Err(e)) if e.is_transient() => {
                    tracing::warn!(error = %e, version = pending.bundle_version, "bundle acknowledgement failed");
                    if !sleep(&mut shutdown, backoff.delay()).await {
                        return;
                    }
                    continue;
                }
                Some(Err(e)) => tracing::error!(error = %e, "bundle acknowledgement refused; dropping it"),
                Some(Ok(())) => {}
            }
            ack = None;
        }
        let signed = match unless_stopped(&mut shutdown, client.bundle(after, opts.poll_wait)).await {
            None => return,
            Some(Ok(None)) => {
                backoff.reset();
                continue;
            }
            Some(Ok(Some(signed))) => signed,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "bundle poll failed");
                if !sleep(&mut shutdown, backoff.delay()).await {
                    return;
                }
                continue;
            }
        };
        let bundle = match store.verify(&signed) {
            Ok(bundle) => bundle,
            Err(e) => {
                tracing::error!(error = %e, "refused a bundle from the control plane");
                // Tell the operator once per refused version, not at every retry.
                ack = refusal_ack(&signed, e.to_string()).filter(|a| last_refused != Some(a.bundle_version));
                last_refused = ack.as_ref().map(|a| a.bundle_version).or(last_refused);
                if !sleep(&mut shutdown, backoff.delay()).await {
                    return;
                }
                continue;
            }
        };
        backoff.reset();
        let version = bundle.version;
        tracing::info!(version, policy_version = bundle.policy_version, "new bundle: applying");
        if unless_stopped(&mut shutdown, to_agent.send(bundle.clone())).await.is_none_or(|sent| sent.is_err())
        {
            return;
        }
        let result = loop {
            match unless_stopped(&mut shutdown, results.recv()).await {
                None | Some(None) => return,
                Some(Some(r)) if r.bundle_version == version => break r,
                Some(Some(r)) => tracing::debug!(version = r.bundle_version, "ignoring a stale apply result"),
            }
        };
        after = version;
        let policy_version = bundle.policy_version;
        if result.error.is_none() {
            if let Err(e) = store.commit(&signed, bundle) {
                tracing::error!(error = %e, version, "applied bundle not saved: after a restart the previous one is enforced until the control plane sends this one again");
            }
            applied.send_replace((Some(version), Some(policy_version)));
        } else {
            tracing::warn!(
                version,
                error = result.error.as_deref(),
                "bundle not applied; the previous one stays in force"
            );
        }
        let applied = result.error.is_none();
        ack = Some(BundleAck { bundle_version: version, policy_version, applied, error: result.error });
    }
}
