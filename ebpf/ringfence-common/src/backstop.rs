//! The backstop's hand-off from its entry program to its tail calls: a per-CPU record of the
//! packet's details, and the words of the packet's own control block (`__sk_buff.cb`) that tie
//! the packet to the record and keep the tail calls' progress (see the eBPF crate's `handoff`).

/// Addresses a packet's verdict covers: its destination and up to `MAX_ROUTE - 1` source-route
/// hops.
pub const MAX_ROUTE: usize = 8;

/// `__sk_buff.cb` words: the ticket (the record's `seq` when the entry claimed it), the next
/// address to decide, audit (an address passed only because the policy audits), the transport
/// protocol, and the ports (source << 16 | destination as the verdict takes it).
pub const CB_TICKET: usize = 0;
pub const CB_NEXT: usize = 1;
pub const CB_AUDIT: usize = 2;
pub const CB_PROTO: usize = 3;
pub const CB_PORTS: usize = 4;

/// What the backstop's entry program hands to its tail calls (per CPU). A tail call trusts it
/// only while `seq` is the ticket in the packet's control block. What a tail call changes per
/// packet (the next address, audit, the transport fields) lives in the control block.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SkbScratch {
    pub addrs: [[u8; 16]; MAX_ROUTE],
    /// The packet's source address (for the per-flow event rate limit).
    pub saddr: [u8; 16],
    /// Addresses in `addrs` (the destination, then source-route hops).
    pub count: u32,
    /// 4 or 6.
    pub family: u32,
    /// Where the IPv6 extension headers or IPv4 options start; the L4 header for simple packets.
    pub l4_off: u32,
    /// The first extension header (IPv6) or 0.
    pub next_hdr: u32,
    pub cgroup_id: u64,
    /// The policy governing the sending socket's cgroup.
    pub policy: u32,
    /// 1: no options and no extension headers (a verdict may be cached).
    pub simple: u32,
    /// Bumped by each hand-off before it writes anything else.
    pub seq: u32,
    pub _pad: u32,
}

const _: () = assert!(core::mem::size_of::<SkbScratch>() == 184);

#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::SkbScratch {}
}
