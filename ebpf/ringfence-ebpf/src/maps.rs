//! Map definitions. Names match `ringfence_common::maps` (agent/tests/object_names.rs checks both
//! ways); every map is pinned by name so that a
//! restarted agent (or a new program version) reuses the same maps and enforcement has no gap.
use aya_ebpf::{
    bindings::bpf_map_type::BPF_MAP_TYPE_SK_STORAGE,
    macros::{btf_map, map},
    maps::{
        Array, CgroupArray, HashMap, LpmTrie, LruHashMap, LruPerCpuHashMap, PerCpuArray, ProgramArray,
        RingBuf,
    },
};
use ringfence_common::{
    AllowedKey, AllowedValue, BlockEntry, BlockKey, BudgetConfig, BudgetCounter, BudgetKey, CgPolicy,
    DestKey, Endpoint, FlowKey, FlowStats, GeoEntry, GeoInfo, Learned, LearnedKey, ListKey, MatchList,
    NameKey, NameRule, Owner, PolicyConfig, PrefixEntry, ServerKey, SkVerdict, TcpSeq, WorkloadState,
    EVENTS_BYTES, MAX_ALLOWED, MAX_BLOCKS, MAX_BUDGET_DESTS, MAX_BUDGET_WORKLOADS, MAX_CGCACHE,
    MAX_DNS_SERVERS, MAX_ENDPOINTS, MAX_FLOWS, MAX_LEARNED, MAX_LIST_ENTRIES, MAX_NAMES, MAX_OWNERS,
    MAX_POLICIES, MAX_TABLES, MAX_TRIE_V4, MAX_TRIE_V6, MAX_WORKLOADS, SKCACHE_FLAGS, STAT_COUNT,
};

/// Trie keys: table id (big-endian) then the address (see `ringfence_common::tables`).
pub type TrieV4 = LpmTrie<[u8; 8], PrefixEntry>;
pub type TrieV6 = LpmTrie<[u8; 20], PrefixEntry>;
pub type GeoV4 = LpmTrie<[u8; 8], GeoEntry>;
pub type GeoV6 = LpmTrie<[u8; 20], GeoEntry>;

/// Hash maps allocate their entries on insert (sizes are upper bounds, not reservations).
const NO_PREALLOC: u32 = aya_ebpf::bindings::BPF_F_NO_PREALLOC;

#[map]
pub static RF_DENY4: TrieV4 = TrieV4::pinned(MAX_TRIE_V4, 0);
#[map]
pub static RF_ALLOW4: TrieV4 = TrieV4::pinned(MAX_TRIE_V4, 0);
#[map]
pub static RF_DENY6: TrieV6 = TrieV6::pinned(MAX_TRIE_V6, 0);
#[map]
pub static RF_ALLOW6: TrieV6 = TrieV6::pinned(MAX_TRIE_V6, 0);
#[map]
pub static RF_GEO4: GeoV4 = GeoV4::pinned(MAX_TRIE_V4, 0);
#[map]
pub static RF_GEO6: GeoV6 = GeoV6::pinned(MAX_TRIE_V6, 0);
#[map]
pub static RF_TABLEGEO: Array<GeoInfo> = Array::pinned(MAX_TABLES, 0);
#[map]
pub static RF_LISTS: HashMap<ListKey, MatchList> = HashMap::pinned(MAX_LIST_ENTRIES, NO_PREALLOC);

#[map]
pub static RF_TABLECFG: Array<PolicyConfig> = Array::pinned(MAX_TABLES, 0);
#[map]
pub static RF_SLOTS: Array<u32> = Array::pinned(MAX_POLICIES, 0);
#[map]
pub static RF_WORKLOADS: HashMap<u64, u32> = HashMap::pinned(MAX_WORKLOADS, NO_PREALLOC);
#[map]
pub static RF_WLSTATE: Array<WorkloadState> = Array::pinned(1, 0);
#[map]
pub static RF_CGCACHE: LruHashMap<u64, CgPolicy> = LruHashMap::pinned(MAX_CGCACHE, 0);
/// Domain names of the allow rules, per table (see `ringfence_common::dns`).
#[map]
pub static RF_NAMES: HashMap<NameKey, NameRule> = HashMap::pinned(MAX_NAMES, NO_PREALLOC);
/// Pinned resolvers and DNS-over-HTTPS endpoints, per table.
#[map]
pub static RF_DNSSRV: HashMap<ServerKey, u32> = HashMap::pinned(MAX_DNS_SERVERS, NO_PREALLOC);
/// Addresses learned from DNS answers, per policy.
#[map]
pub static RF_LEARNED: LruHashMap<LearnedKey, Learned> = LruHashMap::pinned(MAX_LEARNED, 0);
#[map]
pub static RF_EVENTS: RingBuf = RingBuf::pinned(EVENTS_BYTES, 0);
pub type PrefixSetV4 = LpmTrie<[u8; 8], u32>;
pub type PrefixSetV6 = LpmTrie<[u8; 20], u32>;

#[map]
pub static RF_ENC4: PrefixSetV4 = PrefixSetV4::pinned(MAX_TRIE_V4, 0);
#[map]
pub static RF_ENC6: PrefixSetV6 = PrefixSetV6::pinned(MAX_TRIE_V6, 0);
#[map]
pub static RF_HOME4: PrefixSetV4 = PrefixSetV4::pinned(MAX_TRIE_V4, 0);
#[map]
pub static RF_HOME6: PrefixSetV6 = PrefixSetV6::pinned(MAX_TRIE_V6, 0);
#[map]
pub static RF_WGPEERS: HashMap<Endpoint, u32> = HashMap::pinned(MAX_ENDPOINTS, 0);

/// What the egress program hands to the verdict program it tail-calls (per CPU, so no races).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Handoff {
    pub packet: crate::packet::Packet,
    pub key: FlowKey,
    /// The sending socket's cgroup (0: none), whether the policy applies to the packet and
    /// whether it was crafted (see `flows::Sender`).
    pub cgroup_id: u64,
    pub policed: u32,
    pub crafted: u32,
    /// The policy governing that cgroup (the node default without a socket).
    pub policy: u32,
    pub _pad: u32,
}

#[map]
pub static RF_HANDOFF: PerCpuArray<Handoff> = PerCpuArray::with_max_entries(1, 0);
/// Slot 0: the packet-path verdict program (set by the agent before attaching the egress one).
#[map]
pub static RF_TAILS: ProgramArray = ProgramArray::pinned(2, 0);

#[map]
pub static RF_FLOWS: LruPerCpuHashMap<FlowKey, FlowStats> = LruPerCpuHashMap::pinned(MAX_FLOWS, 0);
#[map]
pub static RF_INBOUND: LruHashMap<FlowKey, u32> = LruHashMap::pinned(MAX_FLOWS, 0);
#[map]
pub static RF_CGROUP: CgroupArray = CgroupArray::pinned(1, 0);
#[map]
pub static RF_BLOCKS: HashMap<BlockKey, BlockEntry> = HashMap::pinned(MAX_BLOCKS, 0);
#[map]
pub static RF_BLOCKING: Array<u32> = Array::pinned(1, 0);
#[map]
pub static RF_STATS: PerCpuArray<u64> = PerCpuArray::pinned(STAT_COUNT, 0);

#[map]
pub static RF_OWNERS: LruHashMap<DestKey, Owner> = LruHashMap::pinned(MAX_OWNERS, 0);
#[map]
pub static RF_TCPSEQ: LruHashMap<FlowKey, TcpSeq> = LruHashMap::pinned(MAX_FLOWS, 0);
#[map]
pub static RF_REPLIES: LruHashMap<FlowKey, u32> = LruHashMap::pinned(MAX_FLOWS, 0);
#[map]
pub static RF_DROPLOG: LruHashMap<FlowKey, u64> = LruHashMap::pinned(MAX_FLOWS, 0);
/// The backstop's tail calls (verdict, header parse, budgets).
#[map]
pub static RF_SKB_TAILS: ProgramArray = ProgramArray::pinned(4, 0);
/// The backstop's verdict cache (see `crate::allowed`).
#[map]
pub static RF_ALLOWED: LruHashMap<AllowedKey, AllowedValue> = LruHashMap::pinned(MAX_ALLOWED, 0);
/// Passive-open mark of listeners and the connections they accept (see `crate::passive`). A
/// BTF map (socket storage needs BTF); the agent pins it by path so a restarted agent's
/// programs share it with the adopted ones.
#[btf_map]
pub static RF_SKCACHE: ClonedSkStorage<SkVerdict> = ClonedSkStorage::new();

/// A BTF socket-storage map definition whose values are copied to sockets cloned from the
/// owner (a listener's accepted connections): [`SKCACHE_FLAGS`] holds `BPF_F_CLONE`, which
/// aya-ebpf's `SkStorage` (flags fixed to `BPF_F_NO_PREALLOC`) cannot express. The fields are
/// the libbpf BTF map convention: their types carry the definition, their values are unused.
#[repr(C)]
pub struct ClonedSkStorage<T> {
    r#type: *const [i32; BPF_MAP_TYPE_SK_STORAGE as usize],
    key: *const i32,
    value: *const T,
    max_entries: *const [i32; 0],
    map_flags: *const [i32; SKCACHE_FLAGS as usize],
}

// SAFETY: placeholder pointers the loader replaces with the map; never dereferenced.
unsafe impl<T> Sync for ClonedSkStorage<T> {}

impl<T> ClonedSkStorage<T> {
    pub const fn new() -> Self {
        use core::ptr::null;
        Self { r#type: null(), key: null(), value: null(), max_entries: null(), map_flags: null() }
    }

    /// The map, as the storage helpers take it.
    #[inline(always)]
    pub fn as_ptr(&self) -> *mut core::ffi::c_void {
        (self as *const Self).cast_mut().cast()
    }
}

pub use ringfence_common::{SkbScratch, MAX_ROUTE};

#[map]
pub static RF_SKB_SCRATCH: PerCpuArray<SkbScratch> = PerCpuArray::with_max_entries(1, 0);

/// Exfiltration budgets (`crate::budget`): settings per table, the largest checkpoint seen,
/// counters per workload and per (workload, destination), approved sinks per table.
#[map]
pub static RF_BUDGETCFG: Array<BudgetConfig> = Array::pinned(MAX_TABLES, 0);
#[map]
pub static RF_BUDGETCKPT: Array<u64> = Array::pinned(1, 0);
#[map]
pub static RF_BUDGETWL: HashMap<BudgetKey, BudgetCounter> = HashMap::pinned(MAX_BUDGET_WORKLOADS, 0);
#[map]
pub static RF_BUDGETDST: LruHashMap<BudgetKey, BudgetCounter> = LruHashMap::pinned(MAX_BUDGET_DESTS, 0);
/// A budget's crossing in one window.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct BudgetCrossing {
    pub key: BudgetKey,
    pub start_ns: u64,
}

/// Crossings already alerted: private to the programs (an insert that fails when the key exists
/// makes the alert happen once).
#[map]
pub static RF_BUDGETALERT: LruHashMap<BudgetCrossing, u64> = LruHashMap::with_max_entries(4096, 0);
#[map]
pub static RF_SINK4: PrefixSetV4 = PrefixSetV4::pinned(MAX_TRIE_V4, 0);
#[map]
pub static RF_SINK6: PrefixSetV6 = PrefixSetV6::pinned(MAX_TRIE_V6, 0);

/// Adds one to a per-CPU counter (no atomics needed: each CPU owns its slot).
#[inline(always)]
pub fn bump(stat: u32) {
    if let Some(p) = RF_STATS.get_ptr_mut(stat) {
        unsafe { *p += 1 };
    }
}
