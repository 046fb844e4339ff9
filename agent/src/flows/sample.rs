//! What the flow table hands the exfiltration detector each poll: one flow's identity and
//! cumulative counters. A leaf, so the detector and the flow table both use it and neither
//! imports the other.
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// One flow's cumulative counters at a poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowSample {
    pub id: FlowId,
    /// Cumulative bytes sent (for TCP: payload that advanced the sequence, retransmissions not
    /// counted again).
    pub tx_bytes: u64,
    /// This side sent FIN or RST: the transfer is over.
    pub finished: bool,
}

/// A flow's identity for its whole life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FlowId {
    pub cgroup_id: u64,
    pub local: IpAddr,
    pub local_port: u16,
    pub remote: IpAddr,
    pub remote_port: u16,
    pub protocol: u8,
    /// When the kernel first saw the flow (monotonic ns): tells a reused 5-tuple apart.
    pub first_seen_ns: u64,
}
