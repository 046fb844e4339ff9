//! [`LiveFlows`]: allow verdicts on their way to the control plane's live flow view. Unlike the
//! spool lanes this queue is in memory only and bounded: allows are not evidence (they never
//! enter the control plane's events table or audit chain), so under pressure the oldest are
//! dropped and counted rather than kept.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde_json::Value;
use tokio::sync::Notify;

/// Allow verdicts waiting at most.
pub const LIVE_QUEUE: usize = 4096;

/// The bounded queue of allow-verdict records (JSON objects with an `"id"`).
pub struct LiveFlows {
    queue: Mutex<VecDeque<Value>>,
    capacity: usize,
    /// Dropped since the agent started.
    dropped: AtomicU64,
    /// Dropped and not yet reported to the control plane.
    unreported: AtomicU64,
    /// Wakes the uploader.
    pub notify: Notify,
}

impl Default for LiveFlows {
    fn default() -> Self {
        LiveFlows::with_capacity(LIVE_QUEUE)
    }
}

impl LiveFlows {
    /// A queue of at most `capacity` records.
    pub fn with_capacity(capacity: usize) -> LiveFlows {
        LiveFlows {
            queue: Mutex::new(VecDeque::new()),
            capacity: capacity.max(1),
            dropped: AtomicU64::new(0),
            unreported: AtomicU64::new(0),
            notify: Notify::new(),
        }
    }

    /// Queues a record; a full queue lets its oldest go (counted).
    pub fn push(&self, record: Value) {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= self.capacity {
            q.pop_front();
            self.count_dropped(1);
        }
        q.push_back(record);
        drop(q);
        self.notify.notify_one();
    }

    /// Takes up to `max` records, oldest first, and the drops not reported yet.
    pub fn take(&self, max: usize) -> (Vec<Value>, u64) {
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let n = q.len().min(max);
        let records = q.drain(..n).collect();
        (records, self.unreported.swap(0, Ordering::Relaxed))
    }

    /// Counts `n` records lost (queue full, or an upload that failed).
    pub fn count_dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
        self.unreported.fetch_add(n, Ordering::Relaxed);
    }

    /// Drops taken with [`LiveFlows::take`] whose report did not arrive: reported again later.
    pub fn report_later(&self, n: u64) {
        self.unreported.fetch_add(n, Ordering::Relaxed);
    }

    /// Dropped since the agent started.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Records waiting now.
    pub fn len(&self) -> usize {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bounded_oldest_dropped_and_counted_once_reported() {
        let q = LiveFlows::with_capacity(3);
        for i in 0..5 {
            q.push(json!({"id": i}));
        }
        assert_eq!((q.len(), q.dropped()), (3, 2));
        let (records, unreported) = q.take(2);
        assert_eq!(records, vec![json!({"id": 2}), json!({"id": 3})]);
        assert_eq!(unreported, 2);
        q.count_dropped(1);
        let (records, unreported) = q.take(10);
        assert_eq!((records.len(), unreported, q.dropped()), (1, 1, 3));
        assert!(q.is_empty());
        assert_eq!(q.take(10), (Vec::new(), 0));
    }
}
