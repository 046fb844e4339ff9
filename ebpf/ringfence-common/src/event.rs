//! Verdict events sent from the kernel to the agent through the ring buffer.

/// `Event::verdict` values.
pub const VERDICT_ALLOW: u32 = 0;
pub const VERDICT_DENY: u32 = 1;
/// Audit mode: the policy would deny, the connection was allowed.
pub const VERDICT_AUDIT: u32 = 2;
/// Packet path: plaintext to a must-encrypt destination, dropped.
pub const VERDICT_PLAINTEXT_DROP: u32 = 3;

/// `Event::hook` values, the index into [`crate::PROGRAMS`].
pub const HOOK_CONNECT4: u32 = 0;
pub const HOOK_CONNECT6: u32 = 1;
pub const HOOK_SENDMSG4: u32 = 2;
pub const HOOK_SENDMSG6: u32 = 3;
/// The packet path's egress program (index 4 of [`crate::HOOKS`]).
pub const HOOK_TC_EGRESS: u32 = 4;
/// The enforced cgroup's own packet backstop (`cgroup_skb/egress`).
pub const HOOK_SKB_EGRESS: u32 = 5;
/// Socket creation seen by the BPF LSM (`lsm_cgroup/socket_create`): a packet or XDP socket
/// refused.
pub const HOOK_SOCKET_CREATE: u32 = 6;
/// Socket creation seen by `cgroup/sock_create`: a raw IP socket refused.
pub const HOOK_SOCK_CREATE: u32 = 7;
/// `cgroup/setsockopt`: an option that would bypass the packet path refused.
pub const HOOK_SETSOCKOPT: u32 = 8;
/// `cgroup_skb/ingress`: an inbound connection (TCP SYN) or datagram refused by ingress rules;
/// the event's address is the source, its port the workload's own.
pub const HOOK_SKB_INGRESS: u32 = 9;

/// One verdict. 104 bytes, no implicit padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// `bpf_ktime_get_ns()` (monotonic).
    pub ts_ns: u64,
    pub cgroup_id: u64,
    /// Process id (tgid) and thread id.
    pub pid: u32,
    pub tid: u32,
    pub comm: [u8; 16],
    /// Destination address in network order; IPv4 (also IPv4-mapped IPv6) in the first 4 bytes.
    pub daddr: [u8; 16],
    /// 4 or 6: the family the verdict was computed for; 0 for events without a destination
    /// (socket refusals).
    pub family: u32,
    /// Destination port, host order.
    pub dport: u32,
    /// IP protocol number of the socket.
    pub protocol: u32,
    pub verdict: u32,
    /// 1-based rule index, or [`crate::RULE_DEFAULT`].
    pub rule_id: u32,
    pub hook: u32,
    /// [`crate::PolicyConfig::generation`] of the slot that decided.
    pub generation: u32,
    /// Country of the destination when a geo entry matched ([`crate::country_code`]), else 0.
    pub country: u32,
    /// Socket events ([`HOOK_SOCKET_CREATE`], [`HOOK_SOCK_CREATE`], [`HOOK_SETSOCKOPT`]): the
    /// socket's address family and type (`AF_*`, `SOCK_*`); 0 otherwise.
    pub sock_family: u32,
    pub sock_type: u32,
    /// [`HOOK_SETSOCKOPT`]: the refused option's level and name; 0 otherwise.
    pub sock_level: u32,
    pub sock_opt: u32,
}

const _: () = assert!(core::mem::size_of::<Event>() == 104);

#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::Event {}
}
