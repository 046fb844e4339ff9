//! The live flow bus: every event stored by this replica becomes a [`Flow`] once and is
//! broadcast to the open `GET /v1/observe` streams. A stream that falls more than
//! [`CAPACITY`] flows behind loses the oldest and is told how many (`{"lost_events": N}`).
//!
//! Replicas do not relay each other's events: a stream sees the events stored by the replica
//! it is connected to (its backlog, read from the database, has every replica's).
//!
//! Allow verdicts (`POST /v1/flows`) travel the same bus but are never stored: the newest
//! [`LIVE_RING`] of them are kept here, in memory, for the backlog of streams that start later.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use ringfence_proto::api::{Flow, StoredEvent};
use tokio::sync::broadcast;

use crate::hub::Snapshot;

/// Flows kept for slow streams.
pub const CAPACITY: usize = 65_536;

/// Live (never stored) flows kept for late joiners.
pub const LIVE_RING: usize = 10_000;

/// The broadcast of new flows.
pub struct FlowBus {
    tx: broadcast::Sender<Arc<Flow>>,
    /// The newest live flows, oldest first.
    live: Mutex<VecDeque<Arc<Flow>>>,
}

impl Default for FlowBus {
    fn default() -> Self {
        FlowBus { tx: broadcast::channel(CAPACITY).0, live: Mutex::new(VecDeque::new()) }
    }
}

/// The flow of a stored event, with its node's region and hostname from `snapshot`.
pub fn flow_of(event: &StoredEvent, snapshot: &Snapshot) -> Flow {
    let node = snapshot.node(&event.node_id).map(|n| &n.info);
    let region = node.map_or("", |n| n.region.as_str());
    Flow::from_event(event, region, node.and_then(|n| n.hostname.as_deref()))
}

impl FlowBus {
    /// Sends the flows of newly stored events to every open stream (none open: nothing done).
    pub fn publish(&self, events: &[StoredEvent], snapshot: &Snapshot) {
        if self.tx.receiver_count() == 0 {
            return;
        }
        for e in events {
            // An error means every stream closed meanwhile.
            let _ = self.tx.send(Arc::new(flow_of(e, snapshot)));
        }
    }

    /// Sends live flows (allow verdicts, not stored) to every open stream and keeps the newest
    /// [`LIVE_RING`] of them for streams that start later.
    pub fn publish_live(&self, events: &[StoredEvent], snapshot: &Snapshot) {
        let flows: Vec<Arc<Flow>> = events.iter().map(|e| Arc::new(flow_of(e, snapshot))).collect();
        {
            let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
            let excess = (live.len() + flows.len()).saturating_sub(LIVE_RING).min(live.len());
            live.drain(..excess);
            let skip = flows.len().saturating_sub(LIVE_RING);
            live.extend(flows[skip..].iter().cloned());
        }
        if self.tx.receiver_count() == 0 {
            return;
        }
        for f in flows {
            let _ = self.tx.send(f);
        }
    }

    /// The live flows kept in memory that `keep` selects, newest first, at most `limit`.
    pub fn recent_live(&self, limit: usize, keep: impl Fn(&Flow) -> bool) -> Vec<Flow> {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        live.iter().rev().filter(|f| keep(f)).take(limit).map(|f| (**f).clone()).collect()
    }

    /// A receiver of flows published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Flow>> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringfence_proto::api::Event;

    fn allow(id: usize) -> StoredEvent {
        let event = Event {
            id: format!("a{id}"),
            kind: "allow".into(),
            time_ms: id as i64,
            severity: "info".into(),
            summary: "allow".into(),
            details: serde_json::json!({"dst": "198.51.100.10", "port": 443}),
        };
        StoredEvent { node_id: "n1".into(), event, received_ms: 0 }
    }

    #[test]
    fn live_flows_reach_streams_and_the_ring_keeps_the_newest() {
        let bus = FlowBus::default();
        let snapshot = Snapshot::default();
        let mut rx = bus.subscribe();
        let batch: Vec<StoredEvent> = (0..LIVE_RING + 5).map(allow).collect();
        bus.publish_live(&batch[..3], &snapshot);
        let first = rx.try_recv().expect("a stream gets the live flow");
        assert_eq!((first.verdict.as_str(), first.event_id.as_str()), ("FORWARDED", "a0"));
        bus.publish_live(&batch[3..], &snapshot);
        let kept = bus.recent_live(usize::MAX, |_| true);
        assert_eq!(kept.len(), LIVE_RING, "bounded");
        assert_eq!(kept[0].event_id, format!("a{}", LIVE_RING + 4), "newest first");
        assert_eq!(kept.last().unwrap().event_id, "a5", "the oldest were let go");
        assert_eq!(bus.recent_live(2, |f| f.event_id.ends_with('7')).len(), 2);
    }
}
