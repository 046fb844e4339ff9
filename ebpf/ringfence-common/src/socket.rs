//! Per-socket and per-destination state shared by the cgroup hooks: the backstop's verdict cache
//! and passive-open mark (socket local storage), and which process last connected from a cgroup
//! to a destination (for attribution after an agent restart and for packet-level events).

/// A cgroup and a destination address (network order, IPv4 in the first 4 bytes): the key of
/// [`crate::OWNERS_MAP`] and of [`crate::BLOCKS_MAP`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct DestKey {
    pub cgroup_id: u64,
    pub addr: [u8; 16],
    /// 4 or 6.
    pub family: u32,
    pub _pad: u32,
}

/// Value of [`crate::OWNERS_MAP`]: the process whose connect()/sendmsg() to the destination was
/// last allowed.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Owner {
    pub pid: u32,
    /// Destination port of that call (host order).
    pub port: u32,
    pub comm: [u8; 16],
    /// `bpf_ktime_get_ns()` of the call that last produced an allow event (at most
    /// `ALLOW_EVENT_INTERVAL_NS` old while the same process keeps connecting).
    pub ts_ns: u64,
}

/// [`SkVerdict::flags`]: the connection was opened by the remote side (accepted): its packets
/// are replies and not policed, like connections the connect hooks never see.
pub const SK_PASSIVE: u32 = 1;
/// [`SkVerdict::flags`]: `daddr`/`dport`/`generation` hold a destination the policy allowed.
pub const SK_ALLOWED: u32 = 2;

/// Socket local storage ([`crate::SKCACHE_MAP`]): lets the backstop pass a packet without a
/// verdict when its socket's destination was just allowed under the policy in force.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SkVerdict {
    pub flags: u32,
    /// Policy generation the destination was allowed under.
    pub generation: u32,
    pub daddr: [u8; 16],
    pub family: u32,
    /// Destination port (host order) and IP protocol the verdict was for.
    pub dport: u16,
    pub proto: u16,
}

const _: () = assert!(core::mem::size_of::<DestKey>() == 32);
const _: () = assert!(core::mem::size_of::<Owner>() == 32);
const _: () = assert!(core::mem::size_of::<SkVerdict>() == 32);

#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::DestKey {}
    unsafe impl aya::Pod for super::Owner {}
    unsafe impl aya::Pod for super::SkVerdict {}
}
