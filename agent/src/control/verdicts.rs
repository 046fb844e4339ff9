//! Non-allow verdicts as control-plane events, cheap under a flood: repeated verdicts of the same
//! (cgroup, destination, port, rule) become one record with a count per interval.
//!
//! The first verdict of a key is spooled at once (count 1) and opens a window of
//! [`AGGREGATION_INTERVAL`]; the same key's verdicts within it are counted and spooled as one
//! record when it ends (then a new window opens), so a key yields at most one record per
//! interval. At most [`MAX_KEYS`] keys are tracked; verdicts of further keys are counted into
//! one overflow record per interval, so memory stays flat whatever a workload sends.
//!
//! Plaintext drops go to the protected alert lane (with exfiltration alerts); denials and audit
//! denials to the denial lane, whose size cap can never evict an alert. Allows are not spooled:
//! they go, one record each (the kernel already reports a (process, destination) at most once
//! per interval), to the bounded in-memory live flow queue ([`crate::spool::LiveFlows`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::clock::unix_ms;
use crate::events::{target_text, verdict_record_json, VerdictRecord};
use crate::spool::EventQueue;

/// Window of one key.
pub const AGGREGATION_INTERVAL: Duration = Duration::from_secs(10);
/// Keys tracked at once.
pub const MAX_KEYS: usize = 4096;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    cgroup_id: u64,
    /// None for a refused socket (it had no destination).
    dst: Option<IpAddr>,
    port: u16,
    rule: String,
    verdict: &'static str,
}

struct Window {
    opened: Instant,
    count: u64,
    first_ms: u64,
    last_ms: u64,
    sample: VerdictRecord,
}

impl Window {
    fn summary(&self, overflow: bool) -> Summary {
        let (count, first_ms, last_ms) = (self.count, self.first_ms, self.last_ms);
        Summary { sample: self.sample.clone(), count, first_ms, last_ms, overflow }
    }
}

/// One record to spool: `count` verdicts like `sample` between `first_ms` and `last_ms`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub sample: VerdictRecord,
    pub count: u64,
    pub first_ms: u64,
    pub last_ms: u64,
    /// Verdicts of keys beyond [`MAX_KEYS`] (the sample is the first of them).
    pub overflow: bool,
}

/// The aggregation (pure: time comes in).
pub struct Aggregator {
    interval: Duration,
    max_keys: usize,
    windows: HashMap<Key, Window>,
    overflow: Option<Window>,
    next_flush: Option<Instant>,
}

impl Aggregator {
    pub fn new(interval: Duration, max_keys: usize) -> Aggregator {
        Aggregator { interval, max_keys, windows: HashMap::new(), overflow: None, next_flush: None }
    }

    /// Counts one verdict; the summary to spool now if it is its key's first in a window.
    pub fn observe(&mut self, r: &VerdictRecord, now: Instant, now_ms: u64) -> Option<Summary> {
        let key = Key {
            cgroup_id: r.cgroup_id,
            dst: r.dst,
            port: r.port,
            rule: r.rule.clone(),
            verdict: r.verdict,
        };
        self.next_flush.get_or_insert(now + self.interval / 4);
        if let Some(w) = self.windows.get_mut(&key) {
            if w.count == 0 {
                w.first_ms = now_ms;
            }
            w.count += 1;
            w.last_ms = now_ms;
            return None;
        }
        if self.windows.len() >= self.max_keys {
            let w = self.overflow.get_or_insert_with(|| Window {
                opened: now,
                count: 0,
                first_ms: now_ms,
                last_ms: now_ms,
                sample: r.clone(),
            });
            w.count += 1;
            w.last_ms = now_ms;
            return None;
        }
        self.windows.insert(
            key,
            Window { opened: now, count: 0, first_ms: now_ms, last_ms: now_ms, sample: r.clone() },
        );
        Some(Summary { sample: r.clone(), count: 1, first_ms: now_ms, last_ms: now_ms, overflow: false })
    }

    /// The windows that ended by `now`: a summary for each that counted verdicts (its key's next
    /// window opens now); quiet keys are forgotten. Cheap when nothing is due.
    pub fn flush(&mut self, now: Instant) -> Vec<Summary> {
        if self.next_flush.is_none_or(|t| now < t) {
            return Vec::new();
        }
        self.next_flush =
            (!self.windows.is_empty() || self.overflow.is_some()).then(|| now + self.interval / 4);
        let interval = self.interval;
        let mut out = Vec::new();
        self.windows.retain(|_, w| {
            if now.duration_since(w.opened) < interval {
                return true;
            }
            if w.count == 0 {
                return false;
            }
            out.push(w.summary(false));
            (w.opened, w.count) = (now, 0);
            true
        });
        if self.overflow.as_ref().is_some_and(|w| now.duration_since(w.opened) >= interval) {
            out.extend(self.overflow.take().map(|w| w.summary(true)));
        }
        out
    }

    /// Keys tracked now.
    pub fn keys(&self) -> usize {
        self.windows.len()
    }

    /// Every window's counted verdicts, ended or not (at shutdown: nothing counted is lost).
    pub fn drain(&mut self) -> Vec<Summary> {
        let mut out: Vec<Summary> =
            self.windows.drain().filter(|(_, w)| w.count > 0).map(|(_, w)| w.summary(false)).collect();
        out.extend(self.overflow.take().map(|w| w.summary(true)));
        out
    }
}

/// The severity stored for a verdict (`info`, `warning` or `critical`, as the API lists).
pub fn verdict_severity(verdict: &str) -> &'static str {
    match verdict {
        "plaintext-drop" => "critical",
        "audit-deny" => "info",
        _ => "warning",
    }
}

/// The spool record of a summary: the verdict record's fields with `id`, `type` (the event
/// kind: the verdict, e.g. `deny`), `severity`, `count`, `first_unix_ms`, `last_unix_ms`,
/// `emitted_unix_ms` (when it was spooled) and an explanation.
pub fn summary_json(s: &Summary, id: &str) -> Value {
    let r = &s.sample;
    let mut v = verdict_record_json(r, id);
    let explanation = if s.overflow {
        format!(
            "{} {} verdicts to destinations beyond the {MAX_KEYS} tracked in {}s (first: {} by {} in cgroup {} -> {})",
            s.count, r.verdict, AGGREGATION_INTERVAL.as_secs(), r.verdict, r.rule, r.cgroup_id, target_text(r)
        )
    } else {
        format!(
            "{}x {} by {}: pid {} ({}) in cgroup {} -> {}",
            s.count,
            r.verdict,
            r.rule,
            r.pid,
            r.comm,
            r.cgroup_id,
            target_text(r)
        )
    };
    let obj = v.as_object_mut().expect("a record is an object");
    for (k, x) in [
        ("type", json!(r.verdict)),
        ("severity", json!(verdict_severity(r.verdict))),
        ("count", json!(s.count)),
        ("first_unix_ms", json!(s.first_ms)),
        ("last_unix_ms", json!(s.last_ms)),
        ("unix_ms", json!(s.first_ms)),
        ("overflow", json!(s.overflow)),
        ("emitted_unix_ms", json!(unix_ms())),
        ("explanation", json!(explanation)),
    ] {
        obj.insert(k.to_owned(), x);
    }
    v
}

/// The live-flow record of an allow verdict: the verdict record's fields with `id`, `type`
/// `allow`, severity `info`, the time and an explanation.
pub fn allow_json(r: &VerdictRecord, id: &str) -> Value {
    let mut v = verdict_record_json(r, id);
    let obj = v.as_object_mut().expect("a record is an object");
    obj.insert("type".to_owned(), json!("allow"));
    obj.insert("severity".to_owned(), json!("info"));
    v
}

/// The agent's verdict events under a control plane: aggregation, then the two spool lanes.
pub struct VerdictLane {
    queue: EventQueue,
    agg: Aggregator,
    ids: (String, u64),
    ready: Vec<Summary>,
}

impl VerdictLane {
    /// Verdict events into `queue`'s lanes; ids are `<start time hex>-v<n>`.
    pub fn new(queue: EventQueue) -> VerdictLane {
        VerdictLane {
            queue,
            agg: Aggregator::new(AGGREGATION_INTERVAL, MAX_KEYS),
            ids: (format!("{:x}", unix_ms()), 0),
            ready: Vec::new(),
        }
    }

    /// Counts a verdict record; an allow goes to the live flow queue instead (not spooled: it is
    /// shown by `ringfence observe` but never stored or audited by the control plane).
    pub fn observe(&mut self, r: &VerdictRecord, now: Instant) {
        if r.verdict != "allow" {
            self.ready.extend(self.agg.observe(r, now, unix_ms()));
            return;
        }
        self.ids.1 += 1;
        self.queue.live.push(allow_json(r, &format!("{}-a{}", self.ids.0, self.ids.1)));
    }

    /// Allow verdicts the live flow queue dropped since the agent started.
    pub fn live_dropped(&self) -> u64 {
        self.queue.live.dropped()
    }

    /// Spools what is ready (first verdicts of keys, ended windows): one append per lane.
    pub fn flush(&mut self, now: Instant) {
        let ended = self.agg.flush(now);
        self.ready.extend(ended);
        self.spool_ready();
    }

    fn spool_ready(&mut self) {
        if self.ready.is_empty() {
            return;
        }
        let (mut alerts, mut denials) = (Vec::new(), Vec::new());
        for s in self.ready.drain(..) {
            self.ids.1 += 1;
            let record = summary_json(&s, &format!("{}-v{}", self.ids.0, self.ids.1));
            if s.sample.verdict == "plaintext-drop" {
                alerts.push(record)
            } else {
                denials.push(record)
            }
        }
        for (lane, records) in [(&self.queue.spool, alerts), (&self.queue.denials, denials)] {
            if records.is_empty() {
                continue;
            }
            let appended = lane.lock().unwrap_or_else(|e| e.into_inner()).append_all(&records);
            match appended {
                Ok(()) => self.queue.notify.notify_one(),
                Err(e) => {
                    tracing::error!(error = %e, events = records.len(), "verdict events could not be spooled")
                }
            }
        }
    }
}

/// At shutdown the open windows' counts are spooled too.
impl Drop for VerdictLane {
    fn drop(&mut self) {
        let pending = self.agg.drain();
        self.ready.extend(pending);
        self.spool_ready();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(dst: &str, port: u16) -> VerdictRecord {
        VerdictRecord {
            verdict: "deny",
            rule: "no-exfil".into(),
            rule_id: 3,
            pid: 7,
            comm: "python".into(),
            cgroup_id: 42,
            dst: Some(dst.parse().unwrap()),
            socket: None,
            port,
            protocol: "udp".into(),
            hook: "rf_sendmsg4",
            generation: 1,
            country: None,
            policy: None,
            workload: None,
            labels: None,
            domain: None,
        }
    }

    #[test]
    fn one_record_per_key_per_interval_with_the_count() {
        let mut agg = Aggregator::new(Duration::from_secs(10), 100);
        let t0 = Instant::now();
        let first = agg.observe(&record("203.0.113.5", 443), t0, 1000).expect("first is spooled at once");
        assert_eq!(first.count, 1);
        for i in 1..=999 {
            assert!(agg
                .observe(&record("203.0.113.5", 443), t0 + Duration::from_millis(i), 1000 + i)
                .is_none());
        }
        assert!(agg.observe(&record("203.0.113.5", 53), t0, 1000).is_some(), "another port is another key");
        assert!(agg.flush(t0 + Duration::from_secs(5)).is_empty(), "window still open");
        let ended = agg.flush(t0 + Duration::from_secs(10));
        assert_eq!(ended.len(), 1, "the quiet key yields nothing: {ended:?}");
        assert_eq!((ended[0].count, ended[0].first_ms, ended[0].last_ms), (999, 1001, 1999));
        assert_eq!(agg.keys(), 1, "the quiet key is forgotten");
        // The next window: nothing more, then the key is forgotten too.
        assert!(agg.flush(t0 + Duration::from_secs(20)).is_empty());
        assert_eq!(agg.keys(), 0);
        // Counts of open windows are handed over at shutdown.
        agg.observe(&record("203.0.113.5", 443), t0, 1);
        agg.observe(&record("203.0.113.5", 443), t0, 2);
        let rest = agg.drain();
        assert_eq!((rest.len(), rest[0].count), (1, 1));
    }

    #[test]
    fn keys_beyond_the_table_are_counted_into_one_overflow_record() {
        let mut agg = Aggregator::new(Duration::from_secs(10), 2);
        let t0 = Instant::now();
        for i in 0..100u16 {
            agg.observe(&record("203.0.113.5", 1000 + i), t0, 5);
        }
        assert_eq!(agg.keys(), 2);
        let ended = agg.flush(t0 + Duration::from_secs(10));
        let overflow: Vec<_> = ended.iter().filter(|s| s.overflow).collect();
        assert_eq!(overflow.len(), 1);
        assert_eq!(overflow[0].count, 98);
        let json = summary_json(overflow[0], "x-v1");
        assert_eq!(
            (json["type"].as_str(), json["count"].as_u64(), json["overflow"].as_bool()),
            (Some("deny"), Some(98), Some(true))
        );
        assert_eq!(json["severity"], "warning");
        assert_eq!(verdict_severity("plaintext-drop"), "critical");
    }

    #[test]
    fn allows_go_to_the_live_queue_not_the_spool() {
        let dir = tempfile::tempdir().unwrap();
        let queue = EventQueue::open(dir.path()).unwrap();
        let mut lane = VerdictLane::new(queue.clone());
        let mut allow = record("198.51.100.10", 443);
        (allow.verdict, allow.rule, allow.labels) = ("allow", "to-store".into(), Some("job=train".into()));
        lane.observe(&allow, Instant::now());
        lane.flush(Instant::now());
        drop(lane);
        let (records, dropped) = queue.live.take(10);
        assert_eq!((records.len(), dropped), (1, 0));
        let event = crate::control::event_from_record(&records[0]).expect("an event");
        assert_eq!((event.kind.as_str(), event.severity.as_str()), ("allow", "info"));
        assert_eq!(event.details["rule"], "to-store");
        assert_eq!(event.details["labels"], "job=train");
        for lane in [&queue.spool, &queue.denials] {
            assert!(lane.lock().unwrap().read_batch(10).unwrap().records.is_empty(), "nothing spooled");
        }
    }
}
