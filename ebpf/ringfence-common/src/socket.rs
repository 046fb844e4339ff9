//! Per-socket and per-destination state shared by the cgroup hooks: the passive-open mark
//! (socket local storage), the backstop's verdict cache (per policy table and destination), and
//! which process last connected from a cgroup to a destination (for attribution after an agent
//! restart and for packet-level events).

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
/// are replies and not policed, like connections the connect hooks never see. Set on a
/// listener when it is sent a connection its ingress rules let in, inherited by the sockets it
/// accepts, cleared by connect() (a listener shut down to CLOSE, or an accepted socket
/// disconnected, may connect out: that connection is the workload's own).
pub const SK_PASSIVE: u32 = 1;

/// Socket local storage ([`crate::SKCACHE_MAP`]), created only for TCP listeners that let a
/// connection in (by `rf_skb_ingress`) and copied to the sockets they accept
/// ([`crate::SKCACHE_FLAGS`]): a connect() does not pay for an allocation per socket.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SkVerdict {
    pub flags: u32,
    /// Keeps the value's size (32 bytes) of the pinned map across versions.
    pub _reserved: [u32; 7],
}

/// Key of [`crate::ALLOWED_MAP`]: a destination that policy table `table` (see
/// [`crate::table_id`]) allowed. The verdict of a simple packet (no source route) depends on
/// nothing else, so the entry holds for every socket of every workload under that policy, as
/// long as the table's generation is the one stored.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct AllowedKey {
    pub table: u32,
    /// 4 or 6.
    pub family: u32,
    /// IP protocol and destination port (host order; 0 for protocols without ports).
    pub proto: u32,
    pub port: u32,
    /// Network order, IPv4 in the first 4 bytes.
    pub daddr: [u8; 16],
}

/// Value of [`crate::ALLOWED_MAP`]: the table generation the destination was allowed under and,
/// for policies that learn names, when a packet next renews the destination's learned address
/// (a live flow keeps its address: a reload or a cache eviction then decides it the same way).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct AllowedValue {
    pub generation: u32,
    pub _pad: u32,
    /// `bpf_ktime_get_ns` after which a packet renews the learned address (0: at once).
    pub renew_ns: u64,
}

const _: () = assert!(core::mem::size_of::<DestKey>() == 32);
const _: () = assert!(core::mem::size_of::<Owner>() == 32);
const _: () = assert!(core::mem::size_of::<SkVerdict>() == 32);
const _: () = assert!(core::mem::size_of::<AllowedKey>() == 32);

#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::DestKey {}
    unsafe impl aya::Pod for super::Owner {}
    unsafe impl aya::Pod for super::SkVerdict {}
    unsafe impl aya::Pod for super::AllowedKey {}
    unsafe impl aya::Pod for super::AllowedValue {}
}
