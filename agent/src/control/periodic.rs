//! The periodic parts of [`super::run_sync`]: event upload from the alert spool, reports and
//! certificate renewal.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use ringfence_proto::api::{Event, EventBatch};
use serde_json::Value;
use tokio::sync::watch;

use super::sync::{sleep, unless_stopped, Applied, EventQueue, ReportFn, SyncOptions};
use super::{ControlClient, ControlError};
use crate::exfil::{Spool, SpoolError};

/// The longest event id the control plane stores.
const MAX_EVENT_ID: usize = 128;

/// A spool record as a control-plane event: `id`; `kind` from `"type"` (else `"kind"`, else
/// `alert`); `time_ms` from `"unix_ms"`; severity `critical` stays, `info`/`low` become `info`,
/// anything else (`high`...) `warning`; `summary` from `"explanation"`; `details` the whole
/// record. `None` for a record without a usable id (1 to 128 characters).
pub fn event_from_record(record: &Value) -> Option<Event> {
    let text = |k: &str| record.get(k).and_then(Value::as_str);
    let id = text("id").filter(|id| !id.is_empty() && id.len() <= MAX_EVENT_ID)?;
    let kind = text("type").or_else(|| text("kind")).unwrap_or("alert");
    let severity = match text("severity") {
        Some("critical") => "critical",
        Some("info" | "low") => "info",
        _ => "warning",
    };
    Some(Event {
        id: id.to_owned(),
        kind: kind.to_owned(),
        time_ms: record.get("unix_ms").and_then(Value::as_i64).unwrap_or_else(ringfence_proto::now_ms),
        severity: severity.to_owned(),
        summary: text("explanation").unwrap_or(kind).to_owned(),
        details: record.clone(),
    })
}

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

/// What one [`upload_events`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Uploaded {
    /// Records read from the spool.
    pub read: usize,
    /// Newly stored by the control plane.
    pub accepted: usize,
    /// Already stored by an earlier delivery.
    pub duplicates: usize,
    /// Records acknowledged in the spool.
    pub acknowledged: usize,
}

async fn with_spool<T: Send + 'static>(
    spool: &Arc<Mutex<Spool>>,
    f: impl FnOnce(&mut Spool) -> Result<T, SpoolError> + Send + 'static,
) -> Result<T, ControlError> {
    let spool = spool.clone();
    let run = move || f(&mut spool.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
    tokio::task::spawn_blocking(run).await.expect("spool task panicked").map_err(ControlError::from)
}

/// Uploads up to `limit` pending spool records and acknowledges them in the spool once the
/// control plane has them all (accepted or duplicates). At-least-once: a crash before the
/// acknowledgement resends them, and the control plane stores each id once.
pub async fn upload_events(
    client: &ControlClient,
    spool: &Arc<Mutex<Spool>>,
    limit: usize,
) -> Result<Uploaded, ControlError> {
    let records = with_spool(spool, move |s| s.pending(limit)).await?;
    let Some(last_id) = records.last().and_then(|r| r.get("id")?.as_str().map(str::to_owned)) else {
        return Ok(Uploaded::default());
    };
    let events: Vec<Event> = records.iter().filter_map(event_from_record).collect();
    if events.len() < records.len() {
        tracing::warn!(
            skipped = records.len() - events.len(),
            "alert spool records without a usable id not sent"
        );
    }
    let mut done = Uploaded { read: records.len(), ..Default::default() };
    if !events.is_empty() {
        let stored = client.events(&EventBatch { events }).await?;
        (done.accepted, done.duplicates) = (stored.accepted.len(), stored.duplicates.len());
    }
    done.acknowledged = with_spool(spool, move |s| s.acknowledge_through(&last_id)).await?;
    tracing::debug!(?done, "events uploaded");
    Ok(done)
}

pub(crate) async fn events_loop(
    client: &ControlClient,
    opts: &SyncOptions,
    queue: EventQueue,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new(opts);
    loop {
        let wait = match unless_stopped(&mut shutdown, upload_events(client, &queue.spool, opts.events_batch))
            .await
        {
            None => return,
            Some(Ok(done)) if done.read >= opts.events_batch => Duration::ZERO,
            Some(Ok(_)) => {
                backoff.reset();
                opts.events_every
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "event upload failed; the events stay in the spool");
                // Retry after the backoff, whatever is appended meanwhile.
                if !sleep(&mut shutdown, backoff.delay()).await {
                    return;
                }
                continue;
            }
        };
        let woken = tokio::select! {
            _ = queue.notify.notified() => true,
            slept = sleep(&mut shutdown, wait) => slept,
        };
        if !woken {
            return;
        }
    }
}

pub(crate) async fn report_loop(
    client: &ControlClient,
    opts: &SyncOptions,
    report: ReportFn,
    mut applied: watch::Receiver<Applied>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new(opts);
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
                opts.report_every
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "node report failed");
                backoff.delay().min(opts.report_every)
            }
        };
        // Report again after the interval, or at once when a bundle was applied.
        tokio::select! {
            changed = applied.changed() => if changed.is_err() { return },
            slept = sleep(&mut shutdown, wait) => if !slept { return },
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
    use serde_json::json;

    use super::*;

    #[test]
    fn spool_records_become_events_with_the_whole_record_as_details() {
        let record = json!({
            "id": "19a-7", "type": "exfiltration", "unix_ms": 1_780_000_000_123u64, "kind": "bulk",
            "severity": "high", "destination": "203.0.113.9", "bytes": 123456,
            "explanation": "123456 bytes sent from cgroup 42 to 203.0.113.9",
        });
        let event = event_from_record(&record).unwrap();
        assert_eq!((event.id.as_str(), event.kind.as_str()), ("19a-7", "exfiltration"));
        assert_eq!((event.time_ms, event.severity.as_str()), (1_780_000_000_123, "warning"));
        assert_eq!(event.summary, "123456 bytes sent from cgroup 42 to 203.0.113.9");
        assert_eq!(event.details, record);
        let critical =
            event_from_record(&json!({"id": "x", "severity": "critical", "kind": "deny"})).unwrap();
        assert_eq!(
            (critical.severity.as_str(), critical.kind.as_str(), critical.summary.as_str()),
            ("critical", "deny", "deny")
        );
        assert!(event_from_record(&json!({"id": ""})).is_none());
        assert!(event_from_record(&json!({"id": "x".repeat(129)})).is_none());
        assert!(event_from_record(&json!({"type": "deny"})).is_none());
    }

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
