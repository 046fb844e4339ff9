//! Exfiltration blocks: a (cgroup, destination) pair the agent has blocked after a detection.
//! The connect hooks refuse new connections for the pair and the packet path drops the pair's
//! running flows until the entry expires or is released (`ringfence-agent release`).

/// Key of [`crate::BLOCKS_MAP`]: the blocked cgroup and destination address.
pub type BlockKey = crate::socket::DestKey;

/// Value of [`crate::BLOCKS_MAP`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct BlockEntry {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) after which the block no longer applies.
    pub expires_ns: u64,
    /// When the agent set it (same clock).
    pub created_ns: u64,
}

impl BlockEntry {
    /// True while the block applies at monotonic time `now_ns`.
    #[inline(always)]
    pub fn active(&self, now_ns: u64) -> bool {
        now_ns < self.expires_ns
    }
}

/// `Event::rule_id` of a connection refused because of an exfiltration block.
pub const RULE_EXFIL_BLOCK: u32 = u32::MAX - 2;

const _: () = assert!(core::mem::size_of::<BlockEntry>() == 16);

#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::BlockEntry {}
}
