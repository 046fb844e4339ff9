//! Per-flow byte accounting on the packet path (tcx egress and ingress on the uplinks).

/// A flow from the node's point of view: `local` is this node's address, `remote` the peer's.
/// IPv4 addresses sit in the first 4 bytes. ICMP echo requests and replies carry their
/// identifier in both port fields (so a ping and its replies are one flow); other ICMP messages
/// and protocols without ports have 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    pub local: [u8; 16],
    pub remote: [u8; 16],
    pub local_port: u16,
    pub remote_port: u16,
    /// IP protocol number.
    pub proto: u32,
    /// 4 or 6.
    pub family: u32,
}

/// Counters of one flow on one CPU (the map is per-CPU; the agent sums them).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowStats {
    /// L4 payload bytes and packets sent (egress).
    pub tx_bytes: u64,
    pub tx_packets: u64,
    /// L4 payload bytes and packets received (ingress).
    pub rx_bytes: u64,
    pub rx_packets: u64,
    /// `bpf_ktime_get_ns()` of the first and last packet on this CPU.
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    /// cgroup v2 id of the sending socket (0: no local socket, e.g. forwarded traffic).
    pub cgroup_id: u64,
    /// Egress packets dropped by the policy.
    pub dropped_packets: u64,
    /// Cached egress verdict (`FLOW_VERDICT_*`) and the policy generation it was computed for.
    pub verdict: u32,
    pub verdict_generation: u32,
}

/// TCP sequence-space accounting of one flow's egress (a shared map, not per-CPU: a socket's
/// packets reach the packet path one at a time). Retransmitted bytes are not counted again.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TcpSeq {
    /// Payload bytes that advanced the highest sequence number sent.
    pub data_bytes: u64,
    /// The sequence number after the highest byte sent so far.
    pub next_seq: u32,
    /// `TCPSEQ_*` bits.
    pub flags: u32,
}

/// [`TcpSeq::flags`]: `next_seq` is set.
pub const TCPSEQ_STARTED: u32 = 1;
/// [`TcpSeq::flags`]: this side sent FIN or RST: the transfer is finished.
pub const TCPSEQ_FINISHED: u32 = 2;

/// Cached packet-path decisions ([`FlowStats::verdict`]). A decision depends on whether the
/// sender is policed (the enforced cgroup, or no socket): a pass for a policed sender holds for
/// anyone; a drop only for policed senders; a pass for an unpoliced sender only for unpoliced
/// ones (a policed sender reusing that 5-tuple is decided afresh).
pub const FLOW_VERDICT_UNKNOWN: u32 = 0;
pub const FLOW_VERDICT_PASS: u32 = 1;
pub const FLOW_VERDICT_DROP: u32 = 2;
pub const FLOW_VERDICT_PLAINTEXT: u32 = 3;
pub const FLOW_VERDICT_PASS_UNPOLICED: u32 = 4;

/// Whether a cached decision applies to a packet from a policed (or unpoliced) sender.
#[inline(always)]
pub fn cached_applies(verdict: u32, policed: bool) -> bool {
    match verdict {
        FLOW_VERDICT_PASS | FLOW_VERDICT_PLAINTEXT => true,
        FLOW_VERDICT_DROP => policed,
        FLOW_VERDICT_PASS_UNPOLICED => !policed,
        _ => false,
    }
}

/// A WireGuard peer endpoint (address in network order, IPv4 in the first 4 bytes; port in
/// host order).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Endpoint {
    pub addr: [u8; 16],
    pub port: u32,
    pub family: u32,
}

/// Marker value in the inbound-flow map.
pub const INBOUND: u32 = 1;

const _: () = assert!(core::mem::size_of::<FlowKey>() == 44);
const _: () = assert!(core::mem::size_of::<FlowStats>() == 72);
const _: () = assert!(core::mem::size_of::<TcpSeq>() == 16);

#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for super::FlowStats {}
    unsafe impl aya::Pod for super::Endpoint {}
    unsafe impl aya::Pod for super::TcpSeq {}
}
