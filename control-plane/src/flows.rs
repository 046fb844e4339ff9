//! The live flow bus: every event stored by this replica becomes a [`Flow`] once and is
//! broadcast to the open `GET /v1/observe` streams. A stream that falls more than
//! [`CAPACITY`] flows behind loses the oldest and is told how many (`{"lost_events": N}`).
//!
//! Replicas do not relay each other's events: a stream sees the events stored by the replica
//! it is connected to (its backlog, read from the database, has every replica's).

use std::sync::Arc;

use ringfence_proto::api::{Flow, StoredEvent};
use tokio::sync::broadcast;

use crate::hub::Snapshot;

/// Flows kept for slow streams.
pub const CAPACITY: usize = 65_536;

/// The broadcast of new flows.
pub struct FlowBus {
    tx: broadcast::Sender<Arc<Flow>>,
}

impl Default for FlowBus {
    fn default() -> Self {
        FlowBus { tx: broadcast::channel(CAPACITY).0 }
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

    /// A receiver of flows published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Flow>> {
        self.tx.subscribe()
    }
}
