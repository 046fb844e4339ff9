//! Exfiltration budgets and rate caps, counted and enforced by the workload's packet backstop
//! (`cgroup_skb/egress`): bytes a workload sends to destinations that are not approved sinks,
//! per destination and in total, bytes to DNS resolvers (port 53) and ICMP payload bytes, each
//! within a fixed window, and a token bucket capping its throughput to such destinations.
//!
//! A *workload* is the cgroup with the nearest workload entry ([`crate::WORKLOADS_MAP`]); cgroups
//! the node default governs (and the whole enforced cgroup under `--cgroup`) share workload 0.
//! Counters are keyed by workload, not by policy generation: they survive policy reloads and,
//! being pinned, agent restarts.

/// [`BudgetKey::kind`] and index into [`BudgetConfig::limits`].
pub const BUDGET_DEST: u32 = 0;
pub const BUDGET_TOTAL: u32 = 1;
pub const BUDGET_DNS: u32 = 2;
pub const BUDGET_ICMP: u32 = 3;
/// Kinds of byte budget.
pub const BUDGET_KINDS: usize = 4;
/// [`BudgetKey::kind`] of the workload's rate-cap token bucket.
pub const BUDGET_RATE: u32 = 4;

/// One byte budget: at most `bytes` per `window_ns`. `ppm` (parts per million) above zero makes
/// it relative: `bytes` is then `ppm` millionths of the largest checkpoint seen
/// ([`BUDGET_CHECKPOINT_MAP`]), which fails closed (0 bytes) until a checkpoint was seen.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct BudgetLimit {
    pub bytes: u64,
    pub window_ns: u64,
    pub ppm: u32,
    /// 1: this budget applies.
    pub enabled: u32,
}

/// Value of [`BUDGET_CONFIG_MAP`], one per table id (policy, slot, direction; only egress
/// tables are read).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct BudgetConfig {
    /// Indexed by `BUDGET_DEST`, `BUDGET_TOTAL`, `BUDGET_DNS`, `BUDGET_ICMP`.
    pub limits: [BudgetLimit; BUDGET_KINDS],
    /// Rate cap in bytes per second (0: none) and the bucket's depth in bytes.
    pub rate_bytes_per_sec: u64,
    pub rate_burst: u64,
    /// 1: some budget or the rate cap applies (0 lets the backstop skip all of this).
    pub enabled: u32,
    /// 0: the policy names no approved sink by domain. Otherwise the policy's TTL floor
    /// (seconds): addresses learned for a sink name (`NAME_SINK`) are approved while they live,
    /// and a packet to one keeps it alive at least this long (a long upload outlives the TTL).
    pub sink_names_floor: u32,
}

/// Key of [`BUDGET_WORKLOAD_MAP`] (`addr`/`family` zero) and of [`BUDGET_DEST_MAP`].
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct BudgetKey {
    pub workload: u64,
    pub addr: [u8; 16],
    pub family: u32,
    pub kind: u32,
}

/// A budget's count in its window, or (kind [`BUDGET_RATE`]) a token bucket.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct BudgetCounter {
    /// Bytes counted in the window (atomic adds); for the bucket: tokens (bytes) available.
    pub bytes: u64,
    /// `bpf_ktime_get_ns()` when the window started; for the bucket: the last refill.
    pub start_ns: u64,
    /// `BUDGET_EXHAUSTED` once a packet was refused in this window (64 bits: the programs
    /// set it with an atomic or, which BPF has for 64-bit words).
    pub flags: u64,
    /// Packets refused in this window.
    pub dropped: u64,
}

/// [`BudgetCounter::flags`]: the budget is spent; the workload's packets to the destination
/// (or, for the total, DNS and ICMP budgets, to every non-approved destination) are dropped.
pub const BUDGET_EXHAUSTED: u64 = 1;

/// `Event::verdict` of a budget crossing (one per budget and window) and `Event::rule_id` of
/// a connection refused because a budget is spent. The event's `dport` holds the budget kind.
pub const VERDICT_BUDGET: u32 = 4;
pub const RULE_BUDGET: u32 = u32::MAX - 5;

/// Array of [`BudgetConfig`] per table id.
pub const BUDGET_CONFIG_MAP: &str = "RF_BUDGETCFG";
/// Array with one `u64`: the size of the largest checkpoint the agent has seen (relative budgets).
pub const BUDGET_CHECKPOINT_MAP: &str = "RF_BUDGETCKPT";
/// Hash of [`BudgetKey`] (per workload: total, DNS, ICMP, rate) -> [`BudgetCounter`]. Not LRU: a
/// workload whose counter cannot be created is refused (fail closed).
pub const BUDGET_WORKLOAD_MAP: &str = "RF_BUDGETWL";
pub const MAX_BUDGET_WORKLOADS: u32 = 4 * 16_384 + 64;
/// LRU hash of [`BudgetKey`] (per workload and destination) -> [`BudgetCounter`]. Bounded: an
/// evicted destination starts again at zero, which the total budget bounds.
pub const BUDGET_DEST_MAP: &str = "RF_BUDGETDST";
pub const MAX_BUDGET_DESTS: u32 = 65_536;
/// LPM tries (value `u32`, unused) of approved sinks per table: never counted nor capped.
pub const SINK_V4_MAP: &str = "RF_SINK4";
pub const SINK_V6_MAP: &str = "RF_SINK6";

/// Counters in `RF_STATS`: packets dropped by a budget, by the rate cap, because a workload's
/// budget state could not be created (fail closed), and new per-destination entries (their
/// rate against [`MAX_BUDGET_DESTS`] shows how much the LRU evicts).
pub const STAT_BUDGET_DROPPED: u32 = 13;
pub const STAT_RATE_DROPPED: u32 = 14;
pub const STAT_BUDGET_UNTRACKED: u32 = 15;
/// Entries created in [`BUDGET_DEST_MAP`].
pub const STAT_BUDGET_DEST_NEW: u32 = 16;

/// The name of a budget kind (`dport` of a [`VERDICT_BUDGET`] event).
pub const fn budget_kind_name(kind: u32) -> &'static str {
    match kind {
        BUDGET_DEST => "perDestination",
        BUDGET_TOTAL => "total",
        BUDGET_DNS => "dns",
        BUDGET_ICMP => "icmp",
        _ => "rateLimit",
    }
}

const _: () = assert!(core::mem::size_of::<BudgetLimit>() == 24);
const _: () = assert!(core::mem::size_of::<BudgetConfig>() == 4 * 24 + 24);
const _: () = assert!(core::mem::size_of::<BudgetKey>() == 32);
const _: () = assert!(core::mem::size_of::<BudgetCounter>() == 32);

#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::BudgetConfig {}
    unsafe impl aya::Pod for super::BudgetKey {}
    unsafe impl aya::Pod for super::BudgetCounter {}
}
