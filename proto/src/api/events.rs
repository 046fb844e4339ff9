//! Events agents deliver and the alerts operators read.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One event from an agent's spool. `id` is chosen by the agent, unique per node: the control
/// plane stores each (node, id) once however often it is delivered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// Unique per node (e.g. a UUID or boot id + counter).
    pub id: String,
    /// `deny`, `audit-deny`, `plaintext-drop`, `exfiltration`, ...
    pub kind: String,
    /// When it happened on the node.
    pub time_ms: i64,
    /// `info`, `warning` or `critical`.
    #[serde(default = "default_severity")]
    pub severity: String,
    /// One line for humans.
    pub summary: String,
    /// Event-specific fields (destination, rule, cgroup, bytes...).
    #[serde(default)]
    pub details: Value,
}

fn default_severity() -> String {
    "warning".into()
}

/// `POST /v1/events` (client certificate).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventBatch {
    /// Up to 1000 events.
    pub events: Vec<Event>,
}

/// Which events are now stored: the agent may drop all of them from its spool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsAccepted {
    /// Stored by this request.
    pub accepted: Vec<String>,
    /// Already stored by an earlier delivery.
    pub duplicates: Vec<String>,
}

/// A stored event (`GET /v1/alerts`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoredEvent {
    /// The node that sent it.
    pub node_id: String,
    /// The event.
    #[serde(flatten)]
    pub event: Event,
    /// When the control plane stored it.
    pub received_ms: i64,
}

/// `GET /v1/alerts`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertList {
    /// Newest first.
    pub alerts: Vec<StoredEvent>,
}

/// `POST /v1/flows` (client certificate): allow verdicts for the live flow view only. Unlike
/// [`EventBatch`] they are never stored and never enter the audit chain: the control plane
/// hands them to the open `GET /v1/observe` streams and keeps the newest few thousand in
/// memory for streams that start later. Best effort: the agent drops what it cannot send and
/// says how many in `dropped`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveFlowBatch {
    /// Up to 1000 allow verdicts, as events (`kind` `allow`, the verdict record as `details`).
    pub flows: Vec<Event>,
    /// Allow verdicts the agent dropped since its previous batch (queue full, upload failed).
    #[serde(default)]
    pub dropped: u64,
}

/// The answer to a [`LiveFlowBatch`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveFlowsAccepted {
    /// Flows handed to the live view.
    pub published: usize,
}
