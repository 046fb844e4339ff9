//! Connection limits: a cap on open connections and one per source address, with fairness (at
//! a cap, the oldest idle connection of the busiest source makes room, so a flood of idle
//! connections cannot lock real clients out), and per-connection activity tracking for the idle
//! timeout. "Idle" means no request in flight: handshaking, or waiting for the next request.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// What one connection shares with the limiter and its requests.
#[derive(Debug)]
pub struct Activity {
    busy: AtomicUsize,
    last: Mutex<Instant>,
    /// Wakes the connection's task to close it (evicted for a newer connection).
    pub evicted: Notify,
}

impl Activity {
    fn new() -> Activity {
        Activity { busy: AtomicUsize::new(0), last: Mutex::new(Instant::now()), evicted: Notify::new() }
    }

    /// A request started.
    pub fn begin(&self) {
        self.busy.fetch_add(1, Ordering::SeqCst);
    }

    /// A request ended.
    pub fn end(&self) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        self.busy.fetch_sub(1, Ordering::SeqCst);
    }

    /// How long the connection has been idle (`None` while a request is in flight).
    pub fn idle_for(&self) -> Option<Duration> {
        if self.busy.load(Ordering::SeqCst) > 0 {
            return None;
        }
        Some(self.last.lock().unwrap_or_else(|e| e.into_inner()).elapsed())
    }
}

/// Counts a request in flight while alive.
pub struct InFlight(Arc<Activity>);

impl InFlight {
    /// Marks a request of this connection in flight.
    pub fn new(activity: &Arc<Activity>) -> InFlight {
        activity.begin();
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.end();
    }
}

#[derive(Default)]
struct Open {
    next: u64,
    total: usize,
    by_source: HashMap<IpAddr, Vec<(u64, Arc<Activity>)>>,
}

/// The limiter.
pub struct ConnLimits {
    max: usize,
    per_source: usize,
    open: Mutex<Open>,
}

/// An admitted connection; dropping it frees its place.
pub struct Permit {
    limits: Arc<ConnLimits>,
    source: IpAddr,
    id: u64,
    /// Its activity.
    pub activity: Arc<Activity>,
}

impl ConnLimits {
    /// At most `max` connections, `per_source` from one address.
    pub fn new(max: usize, per_source: usize) -> Arc<ConnLimits> {
        Arc::new(ConnLimits { max, per_source, open: Mutex::new(Open::default()) })
    }

    /// Admits a connection from `source`, evicting an idle one if a cap is reached; `None` if
    /// there is no room (every connection concerned is busy).
    pub fn admit(self: &Arc<Self>, source: IpAddr) -> Option<Permit> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.by_source.get(&source).map_or(0, Vec::len) >= self.per_source
            && !evict_idle(&mut open, source)
        {
            return None;
        }
        if open.total >= self.max {
            let busiest = open
                .by_source
                .iter()
                .filter(|(_, list)| list.iter().any(|(_, a)| a.idle_for().is_some()))
                .max_by_key(|(_, list)| list.len())
                .map(|(s, _)| *s);
            if !busiest.is_some_and(|s| evict_idle(&mut open, s)) {
                return None;
            }
        }
        open.next += 1;
        let id = open.next;
        let activity = Arc::new(Activity::new());
        open.by_source.entry(source).or_default().push((id, activity.clone()));
        open.total += 1;
        Some(Permit { limits: self.clone(), source, id, activity })
    }

    /// Open connections.
    pub fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

/// Evicts the longest-idle connection of `source`; false if all of them are busy.
fn evict_idle(open: &mut Open, source: IpAddr) -> bool {
    let Some(list) = open.by_source.get_mut(&source) else { return false };
    let Some(i) = list
        .iter()
        .enumerate()
        .filter_map(|(i, (_, a))| a.idle_for().map(|d| (i, d)))
        .max_by_key(|(_, d)| *d)
        .map(|(i, _)| i)
    else {
        return false;
    };
    let (_, activity) = list.remove(i);
    if list.is_empty() {
        open.by_source.remove(&source);
    }
    open.total -= 1;
    activity.evicted.notify_one();
    true
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock().unwrap_or_else(|e| e.into_inner());
        let Some(list) = open.by_source.get_mut(&self.source) else { return };
        let before = list.len();
        list.retain(|(id, _)| *id != self.id);
        let removed = before - list.len();
        if list.is_empty() {
            open.by_source.remove(&self.source);
        }
        open.total -= removed;
    }
}

/// The soft limit on open files of this process (`/proc/self/limits`), if readable.
pub fn open_files_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..].split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_source_cap_evicts_idle_and_refuses_when_all_busy() {
        let limits = ConnLimits::new(100, 2);
        let a = limits.admit(ip("127.0.0.1")).unwrap();
        let b = limits.admit(ip("127.0.0.1")).unwrap();
        let _busy = InFlight::new(&b.activity);
        // At the source cap: the idle one (a) makes room.
        let c = limits.admit(ip("127.0.0.1")).unwrap();
        assert_eq!(limits.open(), 2);
        let _busy_c = InFlight::new(&c.activity);
        assert!(limits.admit(ip("127.0.0.1")).is_none(), "both busy: refused");
        assert!(limits.admit(ip("127.0.0.2")).is_some(), "another source is not affected");
        drop(a);
        assert_eq!(limits.open(), 2, "an evicted permit's drop changes nothing");
    }

    #[test]
    fn global_cap_takes_from_the_busiest_source() {
        let limits = ConnLimits::new(4, 4);
        let flood: Vec<Permit> = (0..3).map(|_| limits.admit(ip("192.0.2.1")).unwrap()).collect();
        let honest = limits.admit(ip("192.0.2.2")).unwrap();
        let _honest_busy = InFlight::new(&honest.activity);
        let newcomer = limits.admit(ip("192.0.2.3")).expect("room made by evicting a flood connection");
        assert_eq!(limits.open(), 4);
        assert_eq!(limits.open.lock().unwrap().by_source[&ip("192.0.2.1")].len(), 2);
        drop(newcomer);
        drop(flood);
        assert_eq!(limits.open(), 1);
        assert!(open_files_limit().is_some_and(|n| n > 0));
    }
}
