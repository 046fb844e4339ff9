//! A compiled policy ([`Compiled`]) and a userspace model of the kernel's verdict on it, used
//! to cross-check the compiler against the reference evaluation.

use std::net::IpAddr;
use std::sync::OnceLock;

use ringfence_common::{
    GeoEntry, MatchItem, MatchList, PrefixEntry, ACTION_ALLOW, ACTION_DENY, NO_LIST, RULE_DEFAULT,
    RULE_UNKNOWN_COUNTRY, UNKNOWN_ALLOW, UNKNOWN_DENY,
};

use super::lookup::{LookupIndex, TrieIndex};
use super::names::CompiledName;
use crate::countries::CountryCode;
use crate::prefix::{key_of, normalize_addr};

/// The deny and allow tries of one address family (`N` = 4 or 16 address bytes). Each entry is
/// (masked address in network order, prefix length, value), sorted by address then length.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompiledFamily<const N: usize> {
    pub deny: Vec<([u8; N], u32, PrefixEntry)>,
    pub allow: Vec<([u8; N], u32, PrefixEntry)>,
}

/// A policy in kernel form.
#[derive(Clone, Debug)]
pub struct Compiled {
    /// `ACTION_DENY` or `ACTION_ALLOW`.
    pub default_action: u32,
    /// `MODE_ENFORCE` or `MODE_AUDIT`.
    pub mode: u32,
    pub v4: CompiledFamily<4>,
    pub v6: CompiledFamily<16>,
    /// Match lists shared by both families and the geo tables, indexed by
    /// [`PrefixEntry::list_id`], [`GeoEntry::deny_list`] and [`GeoEntry::allow_list`].
    pub lists: Vec<MatchList>,
    /// `UNKNOWN_DEFAULT`, `UNKNOWN_DENY` or `UNKNOWN_ALLOW` (from `spec.unknownCountry`).
    pub unknown_action: u32,
    /// IPv4 geo trie: (network address, prefix length, entry), sorted, disjoint, aggregated.
    pub geo4: Vec<([u8; 4], u32, GeoEntry)>,
    /// IPv6 geo trie, as `geo4`.
    pub geo6: Vec<([u8; 16], u32, GeoEntry)>,
    /// The countries the policy's rules name, sorted.
    pub countries: Vec<CountryCode>,
    /// Must-encrypt IPv4 prefixes (`spec.peers`): (masked address, prefix length), sorted,
    /// deduplicated, IPv4-mapped IPv6 peers included as IPv4.
    pub encrypt4: Vec<([u8; 4], u32)>,
    /// Must-encrypt IPv6 prefixes, as `encrypt4`.
    pub encrypt6: Vec<([u8; 16], u32)>,
    /// IPv4 prefixes of the home region (its CIDRs and its countries' database networks,
    /// nested prefixes dropped, siblings merged), sorted; empty without crossBorder.
    pub home4: Vec<([u8; 4], u32)>,
    /// IPv6 prefixes of the home region, as `home4`.
    pub home6: Vec<([u8; 16], u32)>,
    /// `spec.crossBorder` is set: every address outside the home prefixes must be encrypted
    /// (the agent sets `CONFIG_CROSS_BORDER` in `PolicyConfig::flags`).
    pub cross_border: bool,
    /// `spec.rawSockets: policy`: raw IP sockets may be created (`CONFIG_RAW_POLICY`).
    pub raw_policy: bool,
    /// The name patterns of the allow rules (`to.fqdns`), sorted by pattern.
    pub names: Vec<CompiledName>,
    /// The policy uses DNS (names or pinned resolvers): the agent sets `CONFIG_DNS`.
    pub dns: bool,
    /// `spec.dns.resolvers`.
    pub resolvers: Vec<IpAddr>,
    /// DNS-over-HTTPS endpoints refused on port 443 (when `dns`).
    pub doh: Vec<IpAddr>,
    /// `spec.dns.minTTL` (seconds).
    pub ttl_floor: u32,
    /// `spec.exfiltration.budgets`/`rateLimit` (enforce mode only) and the approved sinks.
    pub budgets: Option<super::budget::CompiledBudgets>,
    /// Built on the first [`Compiled::evaluate`]; later changes to the fields are not seen by it.
    pub(super) lookup: OnceLock<LookupIndex>,
}

impl Compiled {
    /// A policy with no rules and default deny (the kernel form of "nothing allowed").
    pub fn empty() -> Self {
        Self {
            default_action: ACTION_DENY,
            mode: ringfence_common::MODE_ENFORCE,
            v4: CompiledFamily::default(),
            v6: CompiledFamily::default(),
            lists: Vec::new(),
            unknown_action: ringfence_common::UNKNOWN_DEFAULT,
            geo4: Vec::new(),
            geo6: Vec::new(),
            countries: Vec::new(),
            encrypt4: Vec::new(),
            encrypt6: Vec::new(),
            home4: Vec::new(),
            home6: Vec::new(),
            cross_border: false,
            raw_policy: false,
            names: Vec::new(),
            dns: false,
            resolvers: Vec::new(),
            doh: Vec::new(),
            ttl_floor: ringfence_common::DEFAULT_TTL_FLOOR,
            budgets: None,
            lookup: OnceLock::new(),
        }
    }

    /// Total number of trie entries (both families, both actions).
    pub fn prefix_count(&self) -> usize {
        self.v4.deny.len() + self.v4.allow.len() + self.v6.deny.len() + self.v6.allow.len()
    }

    /// Total number of encryption trie entries (peers and home region, both families).
    pub fn encryption_prefix_count(&self) -> usize {
        self.encrypt4.len() + self.encrypt6.len() + self.home4.len() + self.home6.len()
    }

    /// Total number of geo trie entries (both families).
    pub fn geo_entries(&self) -> usize {
        self.geo4.len() + self.geo6.len()
    }

    /// A userspace model of the kernel verdict. For the deny trie, then the allow trie: look up
    /// the longest prefix containing the address, take the first item of its list matching
    /// `port`/`proto`; if none, continue with prefixes shorter than that one (at most
    /// `MAX_DEPTH` lookups). Then the geo trie: one lookup of the longest geo prefix containing
    /// the address; its deny list, then its allow list, decide if an item matches; an entry
    /// without a match gives the default action. Without an entry, `unknown_action` decides
    /// (rule `RULE_UNKNOWN_COUNTRY`) unless it is `UNKNOWN_DEFAULT`.
    /// Returns (`ACTION_*`, rule id, `RULE_DEFAULT` or `RULE_UNKNOWN_COUNTRY`).
    /// `proto` is a `PROTO_*` value; IPv4-mapped IPv6 addresses are evaluated as IPv4. The mode
    /// is not applied (as in the kernel, audit handling happens after the verdict).
    pub fn evaluate(&self, addr: IpAddr, port: u16, proto: u32) -> (u32, u32) {
        let (action, rule, _) = self.decide(addr, port, proto);
        (action, rule)
    }

    /// A userspace model of the kernel's must-encrypt check: true if the deciding item of the
    /// verdict walk (see [`Compiled::evaluate`]; CIDR tries or geo lists) is an allow item with
    /// `ITEM_ENCRYPT`, or the address is inside an `encrypt4`/`encrypt6` prefix (a peer), or
    /// `cross_border` is set and the address is inside no `home4`/`home6` prefix.
    /// IPv4-mapped IPv6 addresses are checked as IPv4. Independent of the mode.
    pub fn must_encrypt(&self, addr: IpAddr, port: u16, proto: u32) -> bool {
        let (action, _, item) = self.decide(addr, port, proto);
        if action == ACTION_ALLOW && item.is_some_and(|i| i.encrypt()) {
            return true;
        }
        let index = self.index();
        let (encrypt, home, key) = match normalize_addr(addr) {
            IpAddr::V4(a) => (&index.encrypt4, &index.home4, key_of(&a.octets())),
            IpAddr::V6(a) => (&index.encrypt6, &index.home6, key_of(&a.octets())),
        };
        encrypt.contains(key) || (self.cross_border && !home.contains(key))
    }

    fn index(&self) -> &LookupIndex {
        self.lookup.get_or_init(|| LookupIndex {
            deny4: TrieIndex::build(&self.v4.deny),
            allow4: TrieIndex::build(&self.v4.allow),
            deny6: TrieIndex::build(&self.v6.deny),
            allow6: TrieIndex::build(&self.v6.allow),
            geo4: TrieIndex::build(&self.geo4),
            geo6: TrieIndex::build(&self.geo6),
            encrypt4: TrieIndex::build_set(&self.encrypt4),
            encrypt6: TrieIndex::build_set(&self.encrypt6),
            home4: TrieIndex::build_set(&self.home4),
            home6: TrieIndex::build_set(&self.home6),
        })
    }

    /// The verdict walk: (`ACTION_*`, rule id, the deciding match item if a rule decided).
    fn decide(&self, addr: IpAddr, port: u16, proto: u32) -> (u32, u32, Option<MatchItem>) {
        let index = self.index();
        let (deny, allow, geo, key) = match normalize_addr(addr) {
            IpAddr::V4(a) => (&index.deny4, &index.allow4, &index.geo4, key_of(&a.octets())),
            IpAddr::V6(a) => (&index.deny6, &index.allow6, &index.geo6, key_of(&a.octets())),
        };
        if let Some(item) = deny.walk(&self.lists, key, port, proto) {
            return (ACTION_DENY, item.rule_id, Some(item));
        }
        if let Some(item) = allow.walk(&self.lists, key, port, proto) {
            return (ACTION_ALLOW, item.rule_id, Some(item));
        }
        geo_verdict(geo.longest(key), &self.lists, port, proto, self.default_action, self.unknown_action)
    }
}

/// The kernel's geo step for the longest geo entry containing the address (`None`: no entry):
/// (`ACTION_*`, rule id, the deciding match item if a country rule decided).
fn geo_verdict(
    entry: Option<GeoEntry>,
    lists: &[MatchList],
    port: u16,
    proto: u32,
    default_action: u32,
    unknown_action: u32,
) -> (u32, u32, Option<MatchItem>) {
    let find = |id: u32| {
        if id == NO_LIST {
            None
        } else {
            lists.get(id as usize).and_then(|l| l.find_item(port, proto)).copied()
        }
    };
    match entry {
        Some(entry) => {
            if let Some(item) = find(entry.deny_list) {
                (ACTION_DENY, item.rule_id, Some(item))
            } else if let Some(item) = find(entry.allow_list) {
                (ACTION_ALLOW, item.rule_id, Some(item))
            } else {
                (default_action, RULE_DEFAULT, None)
            }
        }
        None => match unknown_action {
            UNKNOWN_DENY => (ACTION_DENY, RULE_UNKNOWN_COUNTRY, None),
            UNKNOWN_ALLOW => (ACTION_ALLOW, RULE_UNKNOWN_COUNTRY, None),
            _ => (default_action, RULE_DEFAULT, None),
        },
    }
}
