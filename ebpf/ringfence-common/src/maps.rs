//! Map names (as pinned under the agent's bpffs directory) and their sizes.
//!
//! The verdict tables exist twice ("slots" 0 and 1): the agent fills the inactive slot and then
//! flips [`ACTIVE_MAP`], so a policy reload is one atomic 4-byte write and there is never an
//! instant where neither the old nor the new policy is in force.

/// Number of policy slots (double buffering).
pub const SLOTS: u32 = 2;

/// LPM tries of IPv4 deny prefixes, per slot. Key data: the address bytes in network order.
pub const DENY_V4_MAPS: [&str; 2] = ["RF_DENY4_0", "RF_DENY4_1"];
/// LPM tries of IPv4 allow prefixes, per slot.
pub const ALLOW_V4_MAPS: [&str; 2] = ["RF_ALLOW4_0", "RF_ALLOW4_1"];
/// LPM tries of IPv6 deny prefixes, per slot.
pub const DENY_V6_MAPS: [&str; 2] = ["RF_DENY6_0", "RF_DENY6_1"];
/// LPM tries of IPv6 allow prefixes, per slot.
pub const ALLOW_V6_MAPS: [&str; 2] = ["RF_ALLOW6_0", "RF_ALLOW6_1"];
/// LPM tries of IPv4 geo-IP networks, per slot, value [`crate::GeoEntry`].
pub const GEO_V4_MAPS: [&str; 2] = ["RF_GEO4_0", "RF_GEO4_1"];
/// LPM tries of IPv6 geo-IP networks, per slot.
pub const GEO_V6_MAPS: [&str; 2] = ["RF_GEO6_0", "RF_GEO6_1"];
/// LPM tries (value `u32`, unused) of destinations that must be encrypted: peer nodes, per slot.
pub const ENCRYPT_V4_MAPS: [&str; 2] = ["RF_ENC4_0", "RF_ENC4_1"];
pub const ENCRYPT_V6_MAPS: [&str; 2] = ["RF_ENC6_0", "RF_ENC6_1"];
/// LPM tries (value `u32`, unused) of the home region (its CIDRs and its countries' networks),
/// per slot: with crossBorder, everything outside must be encrypted.
pub const HOME_V4_MAPS: [&str; 2] = ["RF_HOME4_0", "RF_HOME4_1"];
pub const HOME_V6_MAPS: [&str; 2] = ["RF_HOME6_0", "RF_HOME6_1"];
/// Hash of WireGuard peer endpoints ([`crate::Endpoint`] -> `u32`, unused): UDP to these is the
/// tunnel itself and is what must-encrypt traffic may leave as.
pub const WG_ENDPOINTS_MAP: &str = "RF_WGPEERS";
pub const MAX_ENDPOINTS: u32 = 4096;
/// Array of [`crate::GeoInfo`], one per slot: which database the slot's geo tries came from
/// (read by `ringfence-agent status`; the programs do not use it).
pub const GEO_INFO_MAP: &str = "RF_GEOINFO";
/// Arrays of [`crate::MatchList`], per slot, indexed by [`crate::PrefixEntry::list_id`].
pub const LIST_MAPS: [&str; 2] = ["RF_LISTS_0", "RF_LISTS_1"];
/// Array of [`crate::PolicyConfig`], one per slot.
pub const CONFIG_MAP: &str = "RF_CONFIG";
/// Array with one `u32`: the slot the programs read.
pub const ACTIVE_MAP: &str = "RF_ACTIVE";
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
/// Capacity of each IPv4 / IPv6 LPM trie (entries).
pub const MAX_PREFIXES_V4: u32 = 524_288;
pub const MAX_PREFIXES_V6: u32 = 262_144;
/// Capacity of each IPv4 / IPv6 geo trie (entries, after aggregation).
pub const MAX_GEO_V4: u32 = 524_288;
pub const MAX_GEO_V6: u32 = 262_144;
/// Capacity of each list array.
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
/// Number of counters in [`STATS_MAP`].
pub const STAT_COUNT: u32 = 8;

/// Program names, one module per hook in the eBPF crate. Links are pinned as
/// `<bpffs>/links/<name>`.
pub const PROGRAMS: [&str; 4] = ["rf_connect4", "rf_connect6", "rf_sendmsg4", "rf_sendmsg6"];
/// Packet-path programs (tcx), attached per uplink interface; links pinned as
/// `<bpffs>/links/<name>_<interface>`.
pub const TC_EGRESS: &str = "rf_tc_egress";
/// Every hook that reports events, indexed by `Event::hook`.
pub const HOOKS: [&str; 5] = ["rf_connect4", "rf_connect6", "rf_sendmsg4", "rf_sendmsg6", "rf_tc_egress"];
pub const TC_INGRESS: &str = "rf_tc_ingress";
/// The egress verdict, tail-called by [`TC_EGRESS`] through [`TAILS_MAP`] slot 0.
pub const TC_VERDICT: &str = "rf_tc_verdict";
/// Program array for that tail call (pinned, so the slot outlives the agent like the links).
pub const TAILS_MAP: &str = "RF_TAILS";
/// Packets dropped on the packet path by the policy.
pub const STAT_PACKETS_DROPPED: u32 = 4;
/// Plaintext packets to must-encrypt destinations dropped on the packet path.
pub const STAT_PLAINTEXT_DROPPED: u32 = 5;
/// Connections refused and packets dropped because of an exfiltration block.
pub const STAT_EXFIL_BLOCKED: u32 = 6;
