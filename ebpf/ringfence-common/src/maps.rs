//! Map names (as pinned under the agent's bpffs directory) and their sizes.
//!
//! The eBPF crate declares each map under the same name (`#[map]` takes the static's name, not a
//! constant); `agent/tests/object_names.rs` parses the embedded object and fails when a name here
//! and a map or program there differ, either way.
//!
//! The verdict tables hold every policy of the node, keyed by table id (see [`crate::tables`]):
//! the agent fills a policy's inactive slot and then flips that policy's entry of
//! [`ACTIVE_MAP`], so a policy reload is one atomic 4-byte write and there is never an instant
//! where neither the old nor the new policy is in force.

/// LPM tries of IPv4 deny / allow prefixes. Key data: table id (big-endian), address bytes.
pub const DENY_V4_MAP: &str = "RF_DENY4";
pub const ALLOW_V4_MAP: &str = "RF_ALLOW4";
/// LPM tries of IPv6 deny / allow prefixes.
pub const DENY_V6_MAP: &str = "RF_DENY6";
pub const ALLOW_V6_MAP: &str = "RF_ALLOW6";
/// LPM tries of geo-IP networks, value [`crate::GeoEntry`].
pub const GEO_V4_MAP: &str = "RF_GEO4";
pub const GEO_V6_MAP: &str = "RF_GEO6";
/// LPM tries (value `u32`, unused) of destinations that must be encrypted: peer nodes.
pub const ENCRYPT_V4_MAP: &str = "RF_ENC4";
pub const ENCRYPT_V6_MAP: &str = "RF_ENC6";
/// LPM tries (value `u32`, unused) of the home region (its CIDRs and its countries' networks):
/// with crossBorder, everything outside must be encrypted.
pub const HOME_V4_MAP: &str = "RF_HOME4";
pub const HOME_V6_MAP: &str = "RF_HOME6";
/// Hash of WireGuard peer endpoints ([`crate::Endpoint`] -> `u32`, unused): UDP to these is the
/// tunnel itself and is what must-encrypt traffic may leave as.
pub const WG_ENDPOINTS_MAP: &str = "RF_WGPEERS";
pub const MAX_ENDPOINTS: u32 = 4096;
/// Array of [`crate::GeoInfo`], one per table: which database the table's geo entries came from
/// (read by `ringfence-agent status`; the programs do not use it).
pub const GEO_INFO_MAP: &str = "RF_TABLEGEO";
/// Hash of [`crate::ListKey`] (table, [`crate::PrefixEntry::list_id`]) -> [`crate::MatchList`].
pub const LIST_MAP: &str = "RF_LISTS";
/// Match lists of all tables together.
pub const MAX_LIST_ENTRIES: u32 = 65_536;
/// Array of [`crate::PolicyConfig`], one per table id.
pub const CONFIG_MAP: &str = "RF_TABLECFG";
/// Array of `u32`, one per policy: the slot the programs read.
pub const ACTIVE_MAP: &str = "RF_SLOTS";
/// Hash of cgroup id (`u64`) -> policy index (`u32`): the workload cgroups and their policies.
pub const WORKLOADS_MAP: &str = "RF_WORKLOADS";
pub const MAX_WORKLOADS: u32 = 16_384;
/// Array with one [`crate::WorkloadState`].
pub const WORKLOAD_STATE_MAP: &str = "RF_WLSTATE";
/// LRU hash of cgroup id -> [`crate::CgPolicy`]: the programs' cache of the cgroup walk.
pub const CGCACHE_MAP: &str = "RF_CGCACHE";
pub const MAX_CGCACHE: u32 = 65_536;
/// Cgroup levels below the hierarchy's root the walk looks at.
pub const MAX_CGROUP_LEVELS: i32 = 24;
/// Hash of [`crate::NameKey`] -> [`crate::NameRule`]: the names (exact and wildcard) of every
/// table's allow rules with `to.fqdns`.
pub const NAMES_MAP: &str = "RF_NAMES";
pub const MAX_NAMES: u32 = 65_536;
/// Hash of [`crate::ServerKey`] -> `u32` (`SERVER_*`): per table, the pinned resolvers
/// (`spec.dns.resolvers`) and the known DNS-over-HTTPS endpoints.
pub const DNS_SERVERS_MAP: &str = "RF_DNSSRV";
pub const MAX_DNS_SERVERS: u32 = 16_384;
/// LRU hash of [`crate::LearnedKey`] -> [`crate::Learned`]: addresses learned from the DNS
/// answers of each policy's workloads.
pub const LEARNED_MAP: &str = "RF_LEARNED";
pub const MAX_LEARNED: u32 = 262_144;
/// Ring buffer of [`crate::Event`].
pub const EVENTS_MAP: &str = "RF_EVENTS";
/// Per-CPU array of `u64` counters, indexed by the `STAT_*` constants.
pub const STATS_MAP: &str = "RF_STATS";

/// LRU per-CPU hash of [`crate::FlowKey`] -> [`crate::FlowStats`]: byte accounting per flow.
pub const FLOWS_MAP: &str = "RF_FLOWS";
/// LRU hash of flows the remote side opened (their replies are not egress-policed).
pub const INBOUND_MAP: &str = "RF_INBOUND";
/// Cgroup array with one entry: the enforced cgroup (the packet path polices its sockets and
/// socket-less traffic such as forwarded packets).
pub const CGROUP_MAP: &str = "RF_CGROUP";
/// Hash of [`crate::BlockKey`] -> [`crate::BlockEntry`]: exfiltration blocks set by the agent.
pub const BLOCKS_MAP: &str = "RF_BLOCKS";
/// Array with one `u32`: the number of entries in [`BLOCKS_MAP`] (0 lets the packet path skip
/// the lookup).
pub const BLOCKING_MAP: &str = "RF_BLOCKING";
pub const MAX_BLOCKS: u32 = 4096;
/// Capacity of the flow maps.
pub const MAX_FLOWS: u32 = 65_536;
/// Capacity of one policy's IPv4 / IPv6 LPM trie (entries).
pub const MAX_PREFIXES_V4: u32 = 524_288;
pub const MAX_PREFIXES_V6: u32 = 262_144;
/// Capacity of one policy's IPv4 / IPv6 geo trie (entries, after aggregation).
pub const MAX_GEO_V4: u32 = 524_288;
pub const MAX_GEO_V6: u32 = 262_144;
/// Capacity of the shared tries (all tables together; LPM tries allocate per entry, so the
/// capacity costs no memory until used): two full-size policies during a switch, and more.
pub const MAX_TRIE_V4: u32 = 4 * 1_048_576;
pub const MAX_TRIE_V6: u32 = 2 * 1_048_576;
/// Match lists of one policy (one table).
pub const MAX_LISTS: u32 = 4096;
/// Ring buffer size in bytes (power of two, multiple of the page size).
pub const EVENTS_BYTES: u32 = 1 << 20;
/// Backlog (bytes) at which a program wakes the agent; below it the agent's timer drains events.
pub const EVENTS_WAKEUP_BYTES: u32 = EVENTS_BYTES / 4;
/// How often the agent drains the ring buffer without a wakeup (milliseconds).
pub const EVENTS_POLL_MS: u64 = 100;

/// Events that could not be written because the ring buffer was full.
pub const STAT_EVENTS_DROPPED: u32 = 0;
/// Connections allowed.
pub const STAT_ALLOWED: u32 = 1;
/// Connections denied.
pub const STAT_DENIED: u32 = 2;
/// Connections that would have been denied but were allowed in audit mode.
pub const STAT_AUDITED: u32 = 3;
/// Packets dropped on the packet path (tcx) by the policy.
pub const STAT_PACKETS_DROPPED: u32 = 4;
/// Plaintext packets to must-encrypt destinations dropped on the packet path.
pub const STAT_PLAINTEXT_DROPPED: u32 = 5;
/// Connections refused and packets dropped because of an exfiltration block.
pub const STAT_EXFIL_BLOCKED: u32 = 6;
/// Raw, packet and XDP sockets the enforced cgroup was refused, and socket options that would
/// bypass the packet path.
pub const STAT_SOCKETS_REFUSED: u32 = 7;
/// Packets of the enforced cgroup dropped by its backstop (`cgroup_skb/egress`) by the policy.
pub const STAT_BACKSTOP_DROPPED: u32 = 8;
/// Frames of the enforced cgroup that are neither IPv4, IPv6 nor ARP, dropped on the packet path.
pub const STAT_NONIP_DROPPED: u32 = 9;
/// Packets the backstop decided in full (no cached verdict): how often the slow path ran.
pub const STAT_BACKSTOP_DECIDED: u32 = 10;
/// Inbound connections (TCP SYNs) and datagrams refused by a workload's ingress rules.
pub const STAT_INGRESS_DROPPED: u32 = 12;
/// Sockets the enforced cgroup created that the socket guard looked at (proves it runs).
pub const STAT_SOCKET_GUARD_SEEN: u32 = 11;
/// DNS answers from a pinned resolver whose question matched a name of the policy.
pub const STAT_DNS_MATCHED: u32 = 17;
/// Addresses learned (inserted or refreshed) from DNS answers.
pub const STAT_DNS_LEARNED: u32 = 18;
/// DNS answers not looked at: from a source that is not a pinned resolver of the policy, or
/// malformed.
pub const STAT_DNS_IGNORED: u32 = 19;
/// (13 to 16: the budget counters, `crate::budget`.)
/// Addresses that entered the learned set as new entries (against [`MAX_LEARNED`]: once more
/// than that many came in, each new one evicted the least recently used).
pub const STAT_DNS_NEW: u32 = 20;
/// Number of counters in [`STATS_MAP`].
pub const STAT_COUNT: u32 = 21;

/// The cgroup programs, in the order the agent attaches them (every one is loaded and verified
/// first): the packet backstop, the ingress rules, the socket-creation guards, then the
/// connect/sendmsg hooks. Links are pinned as `<bpffs>/links/<name>`. Once the backstop is
/// attached every packet of the cgroup is decided, so the hooks after it add precision (EPERM
/// at the call, events with the process), never the first line of defence.
pub const SKB_EGRESS: &str = "rf_skb_egress";
/// Exfiltration budgets and the rate cap (`cgroup_skb/egress`): tail-called by the backstop for
/// each packet it lets out under a policy with budgets ([`SKB_TAIL_BUDGET`]), not attached.
pub const SKB_BUDGET: &str = "rf_skb_budget";
/// Ingress rules (`cgroup_skb/ingress`): inbound connections and datagrams to the workloads.
pub const SKB_INGRESS: &str = "rf_skb_ingress";
/// Raw IP socket refusal (`cgroup/sock_create`, any kernel with cgroup BPF).
pub const SOCK_CREATE: &str = "rf_sock_create";
/// Refusal of socket options that bypass the packet path (`cgroup/setsockopt`).
pub const SETSOCKOPT: &str = "rf_setsockopt";
/// Packet and XDP socket refusal (`lsm_cgroup/socket_create`): only where the kernel runs BPF
/// LSM programs (the agent checks before attaching it).
pub const SOCKET_CREATE: &str = "rf_socket_create";
pub const SOCK_ADDR_PROGRAMS: [&str; 4] = ["rf_connect4", "rf_connect6", "rf_sendmsg4", "rf_sendmsg6"];
/// Every pinned cgroup link, in attach order.
pub const PROGRAMS: [&str; 9] = [
    SKB_EGRESS,
    SKB_INGRESS,
    SOCK_CREATE,
    SETSOCKOPT,
    SOCKET_CREATE,
    "rf_connect4",
    "rf_connect6",
    "rf_sendmsg4",
    "rf_sendmsg6",
];
/// Links earlier versions pinned that this one no longer attaches: an upgraded agent removes
/// them once its own programs are attached. `rf_sockops` marked accepted connections; the
/// mark is now set on the listener by `rf_skb_ingress` and inherited by the accepted socket
/// ([`SKCACHE_FLAGS`]), which spares every TCP socket of the cgroup the kernel's sockops
/// callbacks.
pub const RETIRED_PROGRAMS: [&str; 1] = ["rf_sockops"];
/// The backstop's tail-called programs, by slot of [`SKB_TAILS_MAP`]: the verdict per address
/// family (one family per program halves the verifier's work), the header walk, and the
/// exfiltration budgets ([`SKB_BUDGET`]) for what it lets out.
pub const SKB_VERDICT4: &str = "rf_skb_verdict4";
pub const SKB_VERDICT6: &str = "rf_skb_verdict6";
pub const SKB_PARSE: &str = "rf_skb_parse";
pub const SKB_TAIL_VERDICT4: u32 = 0;
pub const SKB_TAIL_PARSE: u32 = 1;
pub const SKB_TAIL_VERDICT6: u32 = 2;
pub const SKB_TAIL_BUDGET: u32 = 3;
/// Program array of the backstop's tail calls (pinned like [`TAILS_MAP`]). A failed tail call
/// drops the packet: the backstop fails closed.
pub const SKB_TAILS_MAP: &str = "RF_SKB_TAILS";
/// Packet-path programs (tcx), attached per uplink interface; links pinned as
/// `<bpffs>/links/<name>_<interface>`.
pub const TC_EGRESS: &str = "rf_tc_egress";
/// Every hook that reports events, indexed by `Event::hook`.
pub const HOOKS: [&str; 10] = [
    "rf_connect4",
    "rf_connect6",
    "rf_sendmsg4",
    "rf_sendmsg6",
    "rf_tc_egress",
    "rf_skb_egress",
    "rf_socket_create",
    "rf_sock_create",
    "rf_setsockopt",
    "rf_skb_ingress",
];
pub const TC_INGRESS: &str = "rf_tc_ingress";
/// The egress verdict per address family, tail-called by [`TC_EGRESS`] through [`TAILS_MAP`]
/// slots 0 (IPv4) and 1 (IPv6).
pub const TC_VERDICT4: &str = "rf_tc_verdict4";
pub const TC_VERDICT6: &str = "rf_tc_verdict6";
/// Program array for that tail call (pinned, so the slot outlives the agent like the links).
pub const TAILS_MAP: &str = "RF_TAILS";

/// LRU hash of [`crate::DestKey`] -> [`crate::Owner`]: the process that last connected from a
/// cgroup to a destination (pinned: survives agent restarts).
pub const OWNERS_MAP: &str = "RF_OWNERS";
pub const MAX_OWNERS: u32 = 65_536;
/// LRU hash of [`crate::FlowKey`] -> [`crate::TcpSeq`]: TCP payload accounting without
/// retransmissions.
pub const TCPSEQ_MAP: &str = "RF_TCPSEQ";
/// LRU hash of [`crate::FlowKey`] -> `u64` (ns): when a packet-level drop of the flow was last
/// reported (one event per flow per [`DROP_EVENT_INTERVAL_NS`]).
pub const DROPLOG_MAP: &str = "RF_DROPLOG";
pub const DROP_EVENT_INTERVAL_NS: u64 = 1_000_000_000;
/// An allowed connection of the same process to the same destination and port is reported at
/// most once per this interval (every one is counted in `STAT_ALLOWED`).
pub const ALLOW_EVENT_INTERVAL_NS: u64 = 10_000_000_000;
/// LRU hash of [`crate::FlowKey`] (the workload's view: local, remote) -> `u32` (unused): UDP
/// flows a workload sent on, whose replies pass its ingress rules.
pub const REPLIES_MAP: &str = "RF_REPLIES";
/// Socket local storage of [`crate::SkVerdict`] (a BTF map, pinned by the agent by path).
pub const SKCACHE_MAP: &str = "RF_SKCACHE";
/// [`SKCACHE_MAP`]'s map flags: `BPF_F_NO_PREALLOC` (required of socket storage) and
/// `BPF_F_CLONE`, so a socket accepted from a listener inherits the listener's storage (its
/// passive-open mark). A pinned map without `BPF_F_CLONE` (an earlier version's) is replaced.
pub const SKCACHE_FLAGS: u32 = BPF_F_NO_PREALLOC | BPF_F_CLONE;
/// The kernel's map flags (`include/uapi/linux/bpf.h`) that [`SKCACHE_FLAGS`] is made of.
pub const BPF_F_NO_PREALLOC: u32 = 1;
pub const BPF_F_CLONE: u32 = 1 << 9;
/// LRU hash of [`crate::AllowedKey`] -> [`crate::AllowedValue`] (the policy generation):
/// destinations a policy table allowed, so the backstop passes their packets without deciding again. A cache: an
/// evicted or stale entry costs a full verdict, never a wrong one.
pub const ALLOWED_MAP: &str = "RF_ALLOWED";
pub const MAX_ALLOWED: u32 = 65_536;

/// Every map the programs pin by name (under `<bpffs>/maps/`), plus [`SKCACHE_MAP`] which the
/// agent pins by path. Per-CPU scratch maps private to one program are not listed: they are not
/// pinned and no one outside the object opens them.
pub const PINNED_MAPS: [&str; 42] = [
    DENY_V4_MAP,
    ALLOW_V4_MAP,
    DENY_V6_MAP,
    ALLOW_V6_MAP,
    GEO_V4_MAP,
    GEO_V6_MAP,
    ENCRYPT_V4_MAP,
    ENCRYPT_V6_MAP,
    HOME_V4_MAP,
    HOME_V6_MAP,
    LIST_MAP,
    WG_ENDPOINTS_MAP,
    GEO_INFO_MAP,
    CONFIG_MAP,
    ACTIVE_MAP,
    WORKLOADS_MAP,
    WORKLOAD_STATE_MAP,
    CGCACHE_MAP,
    EVENTS_MAP,
    STATS_MAP,
    FLOWS_MAP,
    INBOUND_MAP,
    CGROUP_MAP,
    BLOCKS_MAP,
    BLOCKING_MAP,
    SKB_TAILS_MAP,
    TAILS_MAP,
    OWNERS_MAP,
    TCPSEQ_MAP,
    DROPLOG_MAP,
    SKCACHE_MAP,
    REPLIES_MAP,
    ALLOWED_MAP,
    NAMES_MAP,
    DNS_SERVERS_MAP,
    LEARNED_MAP,
    crate::budget::BUDGET_CONFIG_MAP,
    crate::budget::BUDGET_CHECKPOINT_MAP,
    crate::budget::BUDGET_WORKLOAD_MAP,
    crate::budget::BUDGET_DEST_MAP,
    crate::budget::SINK_V4_MAP,
    crate::budget::SINK_V6_MAP,
];
