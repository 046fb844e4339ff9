//! Event upload from the spool lanes: alerts first, then denials, a batch at a time, each
//! acknowledged in its spool once the control plane has all of it (stored or duplicate).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ringfence_proto::api::{Event, EventBatch};
use serde_json::Value;
use tokio::sync::watch;

use super::agent_link::SyncOptions;
use super::client::ControlClient;
use super::error::ControlError;
use super::periodic::{Backoff, Quiet};
use super::wait::{sleep, stopped};
use crate::spool::{Batch, EventQueue, Spool, SpoolError};

/// The longest event id the control plane stores.
const MAX_EVENT_ID: usize = 128;

/// The stored severity (`info`, `warning`, `critical`) of an agent severity: `critical` and
/// `high` (exfiltration alerts) are critical, `warning` and `medium` warning, `info` and `low`
/// info; anything else is a warning.
pub fn stored_severity(agent: Option<&str>) -> &'static str {
    match agent {
        Some("critical" | "high") => "critical",
        Some("info" | "low") => "info",
        _ => "warning",
    }
}

/// A spool record as a control-plane event: `id`; `kind` from `"type"` (a legacy `"verdict"`
/// type: the record's `"verdict"`, e.g. `deny`), else `"kind"`, else `alert`; `time_ms` from
/// `"unix_ms"`; severity by [`stored_severity`]; `summary` from `"explanation"`; `details` the
/// whole record. `None` for a record without a usable id (1 to 128 characters).
pub fn event_from_record(record: &Value) -> Option<Event> {
    let text = |k: &str| record.get(k).and_then(Value::as_str);
    let id = text("id").filter(|id| !id.is_empty() && id.len() <= MAX_EVENT_ID)?;
    let kind = match text("type") {
        Some("verdict") => text("verdict").unwrap_or("deny"),
        Some(t) => t,
        None => text("kind").unwrap_or("alert"),
    };
    Some(Event {
        id: id.to_owned(),
        kind: kind.to_owned(),
        time_ms: record.get("unix_ms").and_then(Value::as_i64).unwrap_or_else(ringfence_proto::now_ms),
        severity: stored_severity(text("severity")).to_owned(),
        summary: text("explanation").unwrap_or(kind).to_owned(),
        details: record.clone(),
    })
}

/// What one [`upload_events`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Uploaded {
    /// Records read from the spools.
    pub read: usize,
    /// Newly stored by the control plane.
    pub accepted: usize,
    /// Already stored by an earlier delivery.
    pub duplicates: usize,
    /// Corrupt records passed over (quarantined).
    pub quarantined: usize,
    /// Whether a lane had more than one batch.
    pub more: bool,
}

async fn with_spool<T: Send + 'static>(
    spool: &Arc<Mutex<Spool>>,
    f: impl FnOnce(&mut Spool) -> Result<T, SpoolError> + Send + 'static,
) -> Result<T, ControlError> {
    let spool = spool.clone();
    let run = move || f(&mut spool.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
    tokio::task::spawn_blocking(run).await.expect("spool task panicked").map_err(ControlError::from)
}

/// Uploads one batch of a lane and acknowledges it.
async fn upload_lane(
    client: &ControlClient,
    spool: &Arc<Mutex<Spool>>,
    limit: usize,
    done: &mut Uploaded,
) -> Result<(), ControlError> {
    let batch: Batch = with_spool(spool, move |s| s.read_batch(limit)).await?;
    if batch.records.is_empty() && batch.quarantined == 0 {
        return Ok(());
    }
    let events: Vec<Event> = batch.records.iter().filter_map(event_from_record).collect();
    if events.len() < batch.records.len() {
        tracing::warn!(
            skipped = batch.records.len() - events.len(),
            "spool records without a usable id not sent"
        );
    }
    if !events.is_empty() {
        let stored = client.events(&EventBatch { events }).await?;
        done.accepted += stored.accepted.len();
        done.duplicates += stored.duplicates.len();
    }
    done.read += batch.records.len();
    done.quarantined += batch.quarantined;
    done.more |= batch.records.len() >= limit;
    with_spool(spool, move |s| s.ack_batch(&batch)).await
}

/// Uploads up to `limit` pending records of the alert lane, then (unless alerts are still
/// pending) of the denial lane. At-least-once: a crash before the acknowledgement resends, and
/// the control plane stores each id once.
pub async fn upload_events(
    client: &ControlClient,
    queue: &EventQueue,
    limit: usize,
) -> Result<Uploaded, ControlError> {
    let mut done = Uploaded::default();
    upload_lane(client, &queue.spool, limit, &mut done).await?;
    if !done.more {
        upload_lane(client, &queue.denials, limit, &mut done).await?;
    }
    if done != Uploaded::default() {
        tracing::debug!(?done, "events uploaded");
    }
    Ok(done)
}

/// How long shutdown waits for an event upload under way.
pub(crate) const UPLOAD_GRACE: Duration = Duration::from_secs(2);

pub(crate) async fn events_loop(
    client: &ControlClient,
    opts: &SyncOptions,
    queue: EventQueue,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new(opts);
    let mut quiet = Quiet::default();
    loop {
        let upload = upload_events(client, &queue, opts.events_batch);
        tokio::pin!(upload);
        let done = tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => None,
            done = &mut upload => Some(done),
        };
        let wait = match done {
            None => {
                // Drain: an upload under way finishes its acknowledgement (the spool cursor
                // moves past what the control plane stored), within a grace period.
                if tokio::time::timeout(UPLOAD_GRACE, upload).await.is_err() {
                    tracing::info!("shutdown: an event upload did not finish within the grace period; it will be repeated (the control plane deduplicates)");
                }
                return;
            }
            Some(Ok(done)) if done.more => Duration::ZERO,
            Some(Ok(_)) => {
                backoff.reset();
                quiet.ok("event upload works again");
                opts.events_every
            }
            Some(Err(e)) => {
                quiet.failed("event upload failed; the events stay in the spool", &e);
                // Retry after the backoff (or the control plane's Retry-After), whatever is
                // appended meanwhile.
                let delay = e.retry_after().unwrap_or_else(|| backoff.delay());
                if !sleep(&mut shutdown, delay).await {
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
        assert_eq!((event.time_ms, event.severity.as_str()), (1_780_000_000_123, "critical"));
        assert_eq!(event.summary, "123456 bytes sent from cgroup 42 to 203.0.113.9");
        assert_eq!(event.details, record);
        // Verdict records of the first version: the kind is the verdict, as the API lists it.
        let legacy = json!({"id": "x", "type": "verdict", "verdict": "audit-deny", "severity": "low"});
        let event = event_from_record(&legacy).unwrap();
        assert_eq!((event.kind.as_str(), event.severity.as_str()), ("audit-deny", "info"));
        let plain = event_from_record(&json!({"id": "y", "kind": "deny", "severity": "medium"})).unwrap();
        assert_eq!(
            (plain.kind.as_str(), plain.severity.as_str(), plain.summary.as_str()),
            ("deny", "warning", "deny")
        );
        assert!(event_from_record(&json!({"id": ""})).is_none());
        assert!(event_from_record(&json!({"id": "x".repeat(129)})).is_none());
        assert!(event_from_record(&json!({"type": "deny"})).is_none());
    }
}
