//! The compiled policy as the kernel reads it.
//!
//! Verdict for a destination (address, port, protocol):
//! 1. CIDR rules: walk the deny trie from the longest matching prefix to shorter ones; the first
//!    prefix whose [`MatchList`] has an item matching the port and protocol decides "deny". If
//!    none does, do the same with the allow trie.
//! 2. Country rules: one lookup in the geo trie (database networks do not overlap). A hit's
//!    [`GeoEntry::deny_list`] is checked, then its `allow_list`. A hit whose lists do not match
//!    falls through to the default action.
//! 3. No geo hit: the address is "unknown" to the database; `PolicyConfig::unknown_action`
//!    decides if set, otherwise the default action.
//! 4. The slot's default action.
//!
//! This gives: CIDR rules beat country rules, deny beats allow within each, then the default;
//! within CIDR rules of one action the longest matching prefix wins.

/// Action values (`PolicyConfig::default_action`). Zero is deny: a zeroed config fails closed.
pub const ACTION_DENY: u32 = 0;
pub const ACTION_ALLOW: u32 = 1;

/// Mode values (`PolicyConfig::mode`).
pub const MODE_ENFORCE: u32 = 0;
pub const MODE_AUDIT: u32 = 1;

/// Protocol values in [`MatchItem::proto`]; TCP, UDP and ICMP use their IP protocol numbers.
/// ICMPv6 packets are decided as [`PROTO_ICMP`] (a rule's `protocol: icmp` means ICMP for IPv4
/// and ICMPv6 for IPv6); ICMP has no ports and is decided with port 0.
pub const PROTO_ANY: u32 = 0;
pub const PROTO_ICMP: u32 = 1;
pub const PROTO_TCP: u32 = 6;
pub const PROTO_UDP: u32 = 17;
pub const PROTO_ICMPV6: u32 = 58;

/// The protocol a verdict is computed for: ICMPv6 as ICMP, everything else unchanged.
#[inline(always)]
pub const fn verdict_proto(proto: u32) -> u32 {
    if proto == PROTO_ICMPV6 {
        PROTO_ICMP
    } else {
        proto
    }
}

/// Rule id reported when the default action decided.
pub const RULE_DEFAULT: u32 = 0;
/// Rule id reported when `unknownCountry` decided (the database does not cover the address).
pub const RULE_UNKNOWN_COUNTRY: u32 = u32::MAX - 1;
/// Rule id of a socket refused by `spec.rawSockets` (raw IP sockets under `deny`; packet and
/// XDP sockets always), or of a socket option refused because it bypasses the packet path.
pub const RULE_RAW_SOCKETS: u32 = u32::MAX - 3;
/// Rule id of a source-routed packet dropped on the packet path (tcx), which does not decide
/// the addresses a source route names (the cgroup backstop does).
pub const RULE_SOURCE_ROUTE: u32 = u32::MAX - 4;

/// `PolicyConfig::unknown_action` values.
pub const UNKNOWN_DEFAULT: u32 = 0;
pub const UNKNOWN_DENY: u32 = 1;
pub const UNKNOWN_ALLOW: u32 = 2;

/// A `GeoEntry` list id meaning "no rule of this action names this country".
pub const NO_LIST: u32 = u32::MAX;

/// Flag in [`MatchItem::proto`] (above the protocol number in the low 8 bits): the rule says
/// `encryption: required`, so traffic it allows must leave inside WireGuard.
pub const ITEM_ENCRYPT: u32 = 1 << 8;
/// Mask of the protocol number in [`MatchItem::proto`].
pub const ITEM_PROTO_MASK: u32 = 0xff;

/// [`PolicyConfig::flags`]: every address outside the home region must be encrypted.
pub const CONFIG_CROSS_BORDER: u32 = 1;
/// [`PolicyConfig::flags`]: `spec.rawSockets: policy`: raw IP sockets may be created (their
/// packets are decided by the backstop). Unset (the default) refuses them.
pub const CONFIG_RAW_POLICY: u32 = 2;
/// [`PolicyConfig::flags`] of an ingress table: the policy has no ingress rules and allows
/// everything inbound (the program passes without a lookup).
pub const CONFIG_OPEN: u32 = 4;

/// [`PolicyConfig::flags`] of an egress table: the policy names domains (`to.fqdns`) or pins
/// resolvers (`spec.dns`): DNS answers are learned, DNS goes to the pinned resolvers only, and
/// DNS over TLS and known DNS-over-HTTPS endpoints are refused.
pub const CONFIG_DNS: u32 = 8;

/// Rule id of DNS (port 53) allowed because it goes to a pinned resolver.
pub const RULE_DNS_RESOLVER: u32 = u32::MAX - 5;
/// Rule id of DNS refused because it does not go to a pinned resolver, of DNS over TLS (port
/// 853), and of HTTPS to a known DNS-over-HTTPS endpoint.
pub const RULE_DNS_PINNED: u32 = u32::MAX - 6;

/// Items per [`MatchList`].
pub const MAX_ITEMS: usize = 16;
/// Nested prefixes the kernel walks per trie before giving up on that trie.
pub const MAX_DEPTH: u32 = 16;

/// Value of every LPM trie entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct PrefixEntry {
    /// The prefix length of this entry, so the kernel can continue with shorter prefixes.
    pub prefix_len: u32,
    /// Index into the slot's list array.
    pub list_id: u32,
}

/// One port range with a protocol, belonging to a rule.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct MatchItem {
    pub port_lo: u16,
    pub port_hi: u16,
    /// Protocol (`PROTO_*`) in the low 8 bits, [`ITEM_ENCRYPT`] above.
    pub proto: u32,
    /// 1-based rule index in the policy.
    pub rule_id: u32,
}

impl MatchItem {
    #[inline(always)]
    pub fn matches(&self, port: u16, proto: u32) -> bool {
        let p = self.proto & ITEM_PROTO_MASK;
        (p == PROTO_ANY || p == proto) && port >= self.port_lo && port <= self.port_hi
    }

    /// Whether the rule requires encryption.
    #[inline(always)]
    pub fn encrypt(&self) -> bool {
        self.proto & ITEM_ENCRYPT != 0
    }
}

/// All (port range, protocol, rule) items of the rules of one action on one exact prefix.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct MatchList {
    pub len: u32,
    pub items: [MatchItem; MAX_ITEMS],
}

impl MatchList {
    /// The rule id of the first item matching `port`/`proto`.
    #[inline(always)]
    pub fn find(&self, port: u16, proto: u32) -> Option<u32> {
        self.find_item(port, proto).map(|i| i.rule_id)
    }

    /// The first item matching `port`/`proto`.
    #[inline(always)]
    pub fn find_item(&self, port: u16, proto: u32) -> Option<&MatchItem> {
        let n = self.len as usize;
        for i in 0..MAX_ITEMS {
            if i >= n {
                break;
            }
            let item = &self.items[i];
            if item.matches(port, proto) {
                return Some(item);
            }
        }
        None
    }
}

/// Value of every geo trie entry: one database network (aggregated with its neighbours when they
/// have the same value).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct GeoEntry {
    /// [`MatchList`] of the deny rules naming this country, or [`NO_LIST`].
    pub deny_list: u32,
    /// [`MatchList`] of the allow rules naming this country, or [`NO_LIST`].
    pub allow_list: u32,
    /// ISO 3166-1 alpha-2 code as `b0 | b1 << 8` (see [`country_code`]); 0 for "a country no
    /// rule names" (such networks are only loaded to tell known from unknown addresses).
    pub country: u32,
    pub _reserved: u32,
}

/// Packs a two-letter country code the way [`GeoEntry::country`] and `Event::country` hold it.
pub const fn country_code(code: [u8; 2]) -> u32 {
    code[0] as u32 | (code[1] as u32) << 8
}

/// Unpacks [`country_code`]; `None` for 0.
pub const fn country_letters(packed: u32) -> Option<[u8; 2]> {
    if packed == 0 {
        None
    } else {
        Some([packed as u8, (packed >> 8) as u8])
    }
}

/// Where a slot's geo entries came from.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GeoInfo {
    /// Database build time (seconds since the epoch), 0 without a database.
    pub build_epoch: u64,
    /// Networks in the database (IPv4 + IPv6).
    pub networks: u32,
    /// Geo trie entries loaded for the slot's policy (after aggregation).
    pub entries_v4: u32,
    pub entries_v6: u32,
    pub _reserved: u32,
    /// Database type (e.g. "GeoLite2-Country"), NUL-padded.
    pub db_type: [u8; 48],
}

impl Default for GeoInfo {
    fn default() -> Self {
        Self { build_epoch: 0, networks: 0, entries_v4: 0, entries_v6: 0, _reserved: 0, db_type: [0; 48] }
    }
}

/// Per-slot settings.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PolicyConfig {
    pub default_action: u32,
    pub mode: u32,
    /// Increases with every policy the agent loads; reported in events.
    pub generation: u32,
    /// `UNKNOWN_*`: what decides addresses the geo database does not cover.
    pub unknown_action: u32,
    /// `CONFIG_*` bits.
    pub flags: u32,
    /// Learned addresses live at least this long (seconds; `spec.dns.minTTL`).
    pub ttl_floor: u32,
}

const _: () = assert!(core::mem::size_of::<MatchList>() == 4 + 12 * MAX_ITEMS);
const _: () = assert!(core::mem::size_of::<GeoInfo>() == 72);
const _: () = assert!(core::mem::size_of::<GeoEntry>() == 16);

#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::PrefixEntry {}
    unsafe impl aya::Pod for super::MatchItem {}
    unsafe impl aya::Pod for super::MatchList {}
    unsafe impl aya::Pod for super::PolicyConfig {}
    unsafe impl aya::Pod for super::GeoEntry {}
    unsafe impl aya::Pod for super::GeoInfo {}
}
