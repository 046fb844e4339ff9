//! Per-node limits: token buckets (reports, events) and the cap on a node's concurrent
//! long-polls. In memory, per replica: a node that spreads its requests over replicas gets each
//! replica's allowance, which still bounds it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// Token buckets keyed by node id: `rate` tokens per second, at most `burst` saved up.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

/// Buckets kept before full (idle) ones are forgotten.
const PRUNE_AT: usize = 100_000;

impl RateLimiter {
    /// `rate` per second, bursts of `burst`.
    pub fn new(rate: f64, burst: u32) -> RateLimiter {
        RateLimiter { rate, burst: f64::from(burst.max(1)), buckets: Mutex::new(HashMap::new()) }
    }

    /// The largest `n` one call can take.
    pub fn burst(&self) -> u32 {
        self.burst as u32
    }

    /// Takes `n` tokens for `key`, or says how long until they are there (nothing taken).
    pub fn take(&self, key: &str, n: u32) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= PRUNE_AT {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, (tokens, at)| *tokens + now.duration_since(*at).as_secs_f64() * rate < burst);
        }
        let (tokens, at) = buckets.entry(key.to_owned()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        let n = f64::from(n);
        if *tokens >= n {
            *tokens -= n;
            return Ok(());
        }
        Err(Duration::from_secs_f64((n.min(self.burst) - *tokens) / self.rate))
    }
}

/// Seconds for a `Retry-After` header: at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

/// A node's waiting long-polls: a new one beyond the cap ends the oldest (which answers 204),
/// so a node that lost track of its connections recovers at once and a hostile one holds at
/// most `max`.
#[derive(Debug)]
pub struct LongPolls {
    max: usize,
    next: Mutex<(u64, HashMap<String, Waiting>)>,
}

/// A node's long-polls, oldest first: (id, superseding signal).
type Waiting = Vec<(u64, watch::Sender<bool>)>;

/// A registered long-poll: `superseded` fires when a newer poll of the same node pushed it out;
/// dropping it unregisters.
pub struct PollSlot<'a> {
    polls: &'a LongPolls,
    node: String,
    id: u64,
    /// Turns true when a newer long-poll of the node takes this one's place.
    pub superseded: watch::Receiver<bool>,
}

impl LongPolls {
    /// At most `max` (at least 1) per node.
    pub fn new(max: usize) -> LongPolls {
        LongPolls { max: max.max(1), next: Mutex::new((0, HashMap::new())) }
    }

    /// Registers a long-poll of `node`, superseding its oldest beyond the cap.
    pub fn register(&self, node: &str) -> PollSlot<'_> {
        let (tx, rx) = watch::channel(false);
        let mut guard = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let (next, map) = &mut *guard;
        *next += 1;
        let id = *next;
        let list = map.entry(node.to_owned()).or_default();
        while list.len() >= self.max {
            let (_, oldest) = list.remove(0);
            let _ = oldest.send(true);
        }
        list.push((id, tx));
        PollSlot { polls: self, node: node.to_owned(), id, superseded: rx }
    }

    /// Waiting long-polls of `node`.
    pub fn count(&self, node: &str) -> usize {
        self.next.lock().unwrap_or_else(|e| e.into_inner()).1.get(node).map_or(0, Vec::len)
    }
}

impl Drop for PollSlot<'_> {
    fn drop(&mut self) {
        let mut guard = self.polls.next.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(list) = guard.1.get_mut(&self.node) {
            list.retain(|(id, _)| *id != self.id);
            if list.is_empty() {
                guard.1.remove(&self.node);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_refill_and_say_when() {
        let limiter = RateLimiter::new(10.0, 5);
        assert!(limiter.take("a", 5).is_ok());
        let wait = limiter.take("a", 2).unwrap_err();
        assert!(wait > Duration::from_millis(150) && wait <= Duration::from_millis(200), "{wait:?}");
        assert!(limiter.take("b", 1).is_ok(), "another node has its own bucket");
        std::thread::sleep(Duration::from_millis(250));
        assert!(limiter.take("a", 2).is_ok());
        assert_eq!(retry_after_secs(Duration::from_millis(10)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(2100)), 3);
    }

    #[test]
    fn a_new_long_poll_beyond_the_cap_supersedes_the_oldest() {
        let polls = LongPolls::new(2);
        let first = polls.register("n");
        let second = polls.register("n");
        let _other = polls.register("m");
        assert!(!*first.superseded.borrow());
        let third = polls.register("n");
        assert!(*first.superseded.borrow(), "the oldest is pushed out");
        assert!(!*second.superseded.borrow() && !*third.superseded.borrow());
        assert_eq!(polls.count("n"), 2);
        drop(third);
        drop(second);
        drop(first);
        assert_eq!(polls.count("n"), 0);
        assert_eq!(polls.count("m"), 1);
    }
}
