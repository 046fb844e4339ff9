//! [`run_sync`]: the agent's long-running exchange with the control plane.
//!
//! Four loops in one future (spawn it with `tokio::spawn`; it is `Send`):
//! - bundles: long-poll `GET /v1/bundle?after=V&wait=30`, verify ([`BundleStore::verify`]), hand
//!   the [`Bundle`] to the agent on [`AgentLink::bundles`], wait for its [`ApplyResult`], then
//!   persist it as the last good bundle (only if applied) and `POST /v1/ack`;
//! - certificate renewal once less than a third of the certificate's lifetime is left;
//! - `POST /v1/report` at start, every 30 s and after each apply;
//! - event upload from the alert spool every second or when notified (see [`super::periodic`]);
//! - allow verdicts to the live flow view as they come, best effort (see [`super::live`]).
//!
//! Errors never stop the loops: each retries with a jittered backoff (1 s doubling to 30 s) and
//! logs what is wrong. The future returns once `shutdown` turns true (or its sender is dropped),
//! or when the agent drops its end of the channels.

use ringfence_proto::api::BundleAck;
use ringfence_proto::{Bundle, SignedBundle};
use tokio::sync::{mpsc, watch};

use super::agent_link::{AgentLink, Applied, ApplyResult, SyncOptions};
use super::bundles::BundleStore;
use super::client::ControlClient;
use super::live::live_loop;
use super::periodic::{renew_loop, report_loop, Backoff};
use super::upload::events_loop;
use super::wait::{sleep, unless_stopped};

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
    let AgentLink { bundles, results, events, report, report_now } = link;
    let poll = bundle_loop(&client, store, &opts, bundles, results, applied_tx, shutdown.clone());
    let renew = renew_loop(&client, &opts, shutdown.clone());
    let reports = report_loop(&client, &opts, report, report_now, applied_rx, shutdown.clone());
    let uploads = async {
        if let Some(queue) = events {
            let live = queue.live.clone();
            tokio::join!(
                events_loop(&client, &opts, queue, shutdown.clone()),
                live_loop(&client, live, shutdown.clone())
            );
        }
    };
    let others = async {
        tokio::join!(renew, reports, uploads);
    };
    tokio::pin!(others);
    tokio::select! {
        _ = poll => {
            // Shutdown (or the agent went away, which ends the bundle loop alone): the other
            // loops stop at once, except an event upload under way, which finishes its
            // acknowledgement first. Bounded: without shutdown they are dropped after the wait.
            let _ = tokio::time::timeout(STOP_GRACE, others).await;
        }
        _ = &mut others => {}
    }
}

/// How long [`run_sync`] waits for its loops to wind down once the bundle loop ended: an event
/// upload's drain, and a second for the rest.
const STOP_GRACE: std::time::Duration =
    super::upload::UPLOAD_GRACE.saturating_add(std::time::Duration::from_secs(1));

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
