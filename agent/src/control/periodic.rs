//! The periodic parts of [`super::run_sync`]: reports and certificate renewal (event upload is
//! in [`super::upload`]); retry delays, and warnings that are not repeated while they stay the same.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::{watch, Notify};

use super::agent_link::{Applied, ReportFn, SyncOptions};
use super::client::ControlClient;
use super::error::ControlError;
use super::wait::{sleep, unless_stopped};

/// Retry delays: doubling from `min` to `max`, each drawn from [d/2, d] (jitter).
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(opts: &SyncOptions) -> Backoff {
        Backoff { min: opts.backoff_min, max: opts.backoff_max, next: opts.backoff_min }
    }

    pub(crate) fn reset(&mut self) {
        self.next = self.min;
    }

    pub(crate) fn delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        base / 2 + base.mul_f64(rand::thread_rng().gen_range(0.0..=0.5))
    }
}

/// Logs a failing call's error once while it stays the same (at debug level after that), and
/// once when the call works again: an agent's log does not repeat a problem every few seconds.
#[derive(Default)]
pub(crate) struct Quiet {
    last: Option<String>,
}

impl Quiet {
    pub(crate) fn failed(&mut self, what: &str, e: &ControlError) {
        let text = e.to_string();
        if self.last.as_deref() == Some(text.as_str()) {
            tracing::debug!(error = %text, "{what} (still)");
        } else {
            tracing::warn!(error = %text, "{what}");
            self.last = Some(text);
        }
    }

    pub(crate) fn ok(&mut self, what: &str) {
        if self.last.take().is_some() {
            tracing::info!("{what}");
        }
    }
}

/// How long a state change waits for more before it is reported.
const REPORT_DEBOUNCE: Duration = Duration::from_millis(500);

pub(crate) async fn report_loop(
    client: &ControlClient,
    opts: &SyncOptions,
    report: ReportFn,
    report_now: Arc<Notify>,
    mut applied: watch::Receiver<Applied>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new(opts);
    let mut quiet = Quiet::default();
    loop {
        let mut body = report();
        let (bundle_version, policy_version) = *applied.borrow_and_update();
        body.applied_bundle_version = bundle_version.or(body.applied_bundle_version);
        body.applied_policy_version = policy_version.or(body.applied_policy_version);
        body.agent_version.get_or_insert_with(|| env!("CARGO_PKG_VERSION").to_owned());
        let wait = match unless_stopped(&mut shutdown, client.report(&body)).await {
            None => return,
            Some(Ok(())) => {
                backoff.reset();
                quiet.ok("node report accepted again");
                opts.report_every
            }
            Some(Err(e)) => {
                quiet.failed("node report failed", &e);
                e.retry_after().unwrap_or_else(|| backoff.delay().min(opts.report_every))
            }
        };
        // Report again after the interval, at once when a bundle was applied, or shortly
        // after the node's state changed (changes in a burst make one report).
        tokio::select! {
            changed = applied.changed() => if changed.is_err() { return },
            slept = sleep(&mut shutdown, wait) => if !slept { return },
            _ = report_now.notified() => if !sleep(&mut shutdown, REPORT_DEBOUNCE.min(wait)).await { return },
        }
    }
}

pub(crate) async fn renew_loop(
    client: &ControlClient,
    opts: &SyncOptions,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new(opts);
    loop {
        let due = client.identity().renew_at_ms() - ringfence_proto::now_ms();
        if due > 0 && !sleep(&mut shutdown, Duration::from_millis(due as u64)).await {
            return;
        }
        match unless_stopped(&mut shutdown, client.renew()).await {
            None => return,
            Some(Ok(not_after_ms)) => {
                backoff.reset();
                tracing::info!(not_after_ms, "client certificate renewed");
            }
            Some(Err(e)) => {
                let left = (client.identity().cert_not_after_ms - ringfence_proto::now_ms()) / 1000;
                if left <= 0 {
                    tracing::error!(error = %e, "the client certificate has expired and cannot be renewed: enroll this node again with a new join token (`ringfence-agent enroll`); enforcing the last good bundle meanwhile");
                } else {
                    tracing::warn!(error = %e, seconds_left = left, "certificate renewal failed; retrying (once the certificate expires the node must enroll again)");
                }
                if !sleep(&mut shutdown, backoff.delay()).await {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter() {
        let opts = SyncOptions::default();
        let mut b = Backoff::new(&opts);
        for base in [1u64, 2, 4, 8, 16, 30, 30] {
            let d = b.delay();
            let base = Duration::from_secs(base);
            assert!(d >= base / 2 && d <= base, "{d:?} for {base:?}");
        }
        b.reset();
        assert!(b.delay() <= Duration::from_secs(1));
    }
}
