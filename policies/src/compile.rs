//! Compilation of a [`Policy`] into the kernel's data: per family and action an LPM trie of
//! prefixes, each pointing at a shared, deduplicated [`MatchList`], and per family a geo trie of
//! database networks (see [`crate::compile_geo`]). Sans-IO: the agent writes the result into the
//! maps.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::OnceLock;

use ipnet::IpNet;
use ringfence_common::{
    GeoEntry, MatchItem, MatchList, PrefixEntry, ACTION_ALLOW, ACTION_DENY, ITEM_ENCRYPT, MAX_DEPTH,
    MAX_ITEMS, MAX_LISTS, MAX_PREFIXES_V4, MAX_PREFIXES_V6, MODE_AUDIT, MODE_ENFORCE, PROTO_ANY,
    UNKNOWN_ALLOW, UNKNOWN_DEFAULT, UNKNOWN_DENY,
};

use crate::compile_encrypt::{build_home, build_peers};
use crate::compile_geo::{build_geo, geo_verdict, intern};
use crate::compile_lookup::{deepest_chain, key_of, LookupIndex, TrieIndex};
use crate::countries::{country_str, CountryCode};
use crate::geo::GeoDb;
use crate::model::{normalize_addr, Action, Mode, Policy, Rule};

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
    /// Built on the first [`Compiled::evaluate`]; later changes to the fields are not seen by it.
    lookup: OnceLock<LookupIndex>,
}

/// Why a policy cannot be represented in the kernel's maps.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// More than `MAX_ITEMS` match items of one action on one exact prefix.
    #[error("prefix {prefix} has {items} {action} match items (rules {}), more than the kernel limit of {max} per prefix; merge ports into ranges or split the prefix", .rules.join(", "))]
    TooManyItems { prefix: IpNet, action: Action, items: usize, rules: Vec<String>, max: usize },
    /// More distinct match lists than the kernel's list array holds (`MAX_LISTS`).
    #[error("the policy needs {lists} distinct match lists, more than the kernel limit of {max}")]
    TooManyLists { lists: usize, max: usize },
    /// More prefixes than one LPM trie holds (`MAX_PREFIXES_V4` / `MAX_PREFIXES_V6`).
    #[error("{count} IPv{family} {action} prefixes, more than the kernel limit of {max}")]
    TooManyPrefixes { family: u8, action: Action, count: usize, max: usize },
    /// A chain of nested prefixes of one action longer than the kernel walks (`MAX_DEPTH`);
    /// `chain` lists it from the outermost prefix.
    #[error("{depth} nested {action} prefixes ({}), more than the kernel's walk depth of {max}; remove or merge nested CIDRs", .chain.iter().map(ToString::to_string).collect::<Vec<_>>().join(" > "))]
    TooDeep { action: Action, depth: usize, chain: Vec<IpNet>, max: u32 },
    /// The policy names countries (or sets `unknownCountry`) but no geo-IP database was given.
    /// `countries` lists the codes named (empty if only `unknownCountry` is set).
    #[error("{}; give the agent a geo-IP database with --geoip-db", geo_required(.countries))]
    GeoDatabaseRequired { countries: Vec<String> },
    /// More than `MAX_ITEMS` match items of one action naming one country.
    #[error("country {country} has {items} {action} match items (rules {}), more than the kernel limit of {max} per country; merge ports into ranges or split the rules", .rules.join(", "))]
    TooManyCountryItems { country: String, action: Action, items: usize, rules: Vec<String>, max: usize },
    /// More geo entries (after aggregation) than one geo trie holds (`MAX_GEO_V4` / `MAX_GEO_V6`).
    #[error("{count} IPv{family} geo-IP entries after aggregation, more than the kernel limit of {max}")]
    TooManyGeoEntries { family: u8, count: usize, max: usize },
    /// More prefixes than one encryption trie holds (`MAX_PREFIXES_V4` / `MAX_PREFIXES_V6`);
    /// `table` is `"peer"` (`spec.peers`) or `"home region"` (crossBorder's home region).
    #[error("{count} IPv{family} {table} prefixes, more than the kernel limit of {max}")]
    TooManyEncryptionPrefixes { table: &'static str, family: u8, count: usize, max: usize },
}

fn geo_required(countries: &[String]) -> String {
    if countries.is_empty() {
        "the policy sets unknownCountry".to_owned()
    } else {
        format!("the policy names countries ({})", countries.join(", "))
    }
}

/// (masked address, prefix length, item), in rule id order.
type Entries = Vec<(u128, u32, MatchItem)>;

/// The match items of `rule`; each carries `ITEM_ENCRYPT` if the rule requires encryption.
pub(crate) fn items_of(rule: &Rule) -> Vec<MatchItem> {
    let flags = if rule.encryption_required { ITEM_ENCRYPT } else { 0 };
    if rule.ports.is_empty() {
        return vec![MatchItem { port_lo: 0, port_hi: 65535, proto: PROTO_ANY | flags, rule_id: rule.id }];
    }
    let items = rule.ports.iter().map(|p| MatchItem {
        port_lo: p.lo,
        port_hi: p.hi,
        proto: p.protocol.to_kernel() | flags,
        rule_id: rule.id,
    });
    items.collect()
}

fn key_to_net(key: u128, len: u32, width: u32) -> IpNet {
    let addr =
        if width == 32 { IpAddr::from((key as u32).to_be_bytes()) } else { IpAddr::from(key.to_be_bytes()) };
    IpNet::new(addr, len as u8).expect("valid prefix length")
}

/// Builds one trie: groups items by exact prefix, checks item count and nesting depth, and
/// assigns deduplicated list ids.
fn build_trie<const N: usize>(
    mut entries: Entries,
    action: Action,
    policy: &Policy,
    dedup: &mut HashMap<MatchList, u32>,
    lists: &mut Vec<MatchList>,
) -> Result<Vec<([u8; N], u32, PrefixEntry)>, CompileError> {
    let width = (N * 8) as u32;
    // Stable: items of one prefix stay in rule id (and port entry) order.
    entries.sort_by_key(|&(key, len, _)| (key, len));
    let groups: Vec<&[(u128, u32, MatchItem)]> = entries.chunk_by(|a, b| (a.0, a.1) == (b.0, b.1)).collect();
    let (family, max) = if N == 4 { (4, MAX_PREFIXES_V4) } else { (6, MAX_PREFIXES_V6) };
    if groups.len() > max as usize {
        return Err(CompileError::TooManyPrefixes { family, action, count: groups.len(), max: max as usize });
    }
    let keys: Vec<(u128, u32)> = groups.iter().map(|g| (g[0].0, g[0].1)).collect();
    let chain = deepest_chain(&keys, width);
    if chain.len() > MAX_DEPTH as usize {
        let chain: Vec<IpNet> = chain.iter().map(|(a, l)| key_to_net(*a, *l, width)).collect();
        return Err(CompileError::TooDeep { action, depth: chain.len(), chain, max: MAX_DEPTH });
    }
    let mut out = Vec::with_capacity(groups.len());
    let mut previous: Option<(MatchList, u32)> = None;
    for items in groups {
        let (addr, len) = (items[0].0, items[0].1);
        if items.len() > MAX_ITEMS {
            let mut ids: Vec<u32> = items.iter().map(|(_, _, i)| i.rule_id).collect();
            ids.dedup();
            let rules = ids
                .iter()
                .map(|id| format!("{id} \"{}\"", policy.rule(*id).map_or("?", |r| r.name.as_str())))
                .collect();
            let prefix = key_to_net(addr, len, width);
            return Err(CompileError::TooManyItems {
                prefix,
                action,
                items: items.len(),
                rules,
                max: MAX_ITEMS,
            });
        }
        let mut list = MatchList { len: items.len() as u32, ..MatchList::default() };
        for (slot, (_, _, item)) in list.items.iter_mut().zip(items) {
            *slot = *item;
        }
        // Neighbouring prefixes usually share a list: compare before hashing.
        let list_id = match previous {
            Some((prev, id)) if prev == list => id,
            _ => intern(list, dedup, lists),
        };
        previous = Some((list, list_id));
        let bytes: [u8; N] = addr.to_be_bytes()[16 - N..].try_into().expect("N <= 16");
        out.push((bytes, len, PrefixEntry { prefix_len: len, list_id }));
    }
    Ok(out)
}

/// Compiles `policy` for the kernel: for each family and action, every (rule, CIDR) is grouped
/// by exact prefix; a prefix's [`MatchList`] holds one item per port entry (or one
/// `0-65535/any` item for a rule without ports) of every rule of that action on that prefix,
/// ordered by rule id. Identical lists are shared. See [`Compiled::evaluate`] for the walk.
///
/// Country rules need `geo`: for each database network of a country some rule names, a
/// [`GeoEntry`] points at the match list of the deny rules and of the allow rules naming that
/// country. With `unknownCountry` set, the networks of every other country are loaded too
/// (with `NO_LIST` and country 0) so that the kernel can tell known from unknown addresses.
/// Sibling networks with identical entries are merged. A policy that names countries or sets
/// `unknownCountry` is [`CompileError::GeoDatabaseRequired`] without `geo`; for any other
/// policy `geo` is not used.
pub fn compile(policy: &Policy, geo: Option<&GeoDb>) -> Result<Compiled, CompileError> {
    // Index: [v4 deny, v4 allow, v6 deny, v6 allow].
    let mut groups: [Entries; 4] = Default::default();
    for rule in &policy.rules {
        let items = items_of(rule);
        let mut cidrs: Vec<IpNet> =
            rule.cidrs.iter().map(|n| crate::model::normalize_net(n.trunc())).collect();
        cidrs.sort_unstable();
        cidrs.dedup();
        for net in cidrs {
            let (family, key) = match net.network() {
                IpAddr::V4(a) => (0, key_of(&a.octets())),
                IpAddr::V6(a) => (2, key_of(&a.octets())),
            };
            let slot = family + usize::from(rule.action == Action::Allow);
            let len = u32::from(net.prefix_len());
            groups[slot].extend(items.iter().map(|item| (key, len, *item)));
        }
    }
    let mut dedup = HashMap::new();
    let mut lists = Vec::new();
    let [d4, a4, d6, a6] = groups;
    let v4 = CompiledFamily {
        deny: build_trie(d4, Action::Deny, policy, &mut dedup, &mut lists)?,
        allow: build_trie(a4, Action::Allow, policy, &mut dedup, &mut lists)?,
    };
    let v6 = CompiledFamily {
        deny: build_trie(d6, Action::Deny, policy, &mut dedup, &mut lists)?,
        allow: build_trie(a6, Action::Allow, policy, &mut dedup, &mut lists)?,
    };
    let countries = policy.countries();
    let (geo4, geo6) = match geo {
        _ if !policy.references_countries() => (Vec::new(), Vec::new()),
        None => {
            let countries = policy.geo_countries().iter().map(|c| country_str(c).to_owned()).collect();
            return Err(CompileError::GeoDatabaseRequired { countries });
        }
        Some(db) => build_geo(policy, db, &mut dedup, &mut lists)?,
    };
    if lists.len() > MAX_LISTS as usize {
        return Err(CompileError::TooManyLists { lists: lists.len(), max: MAX_LISTS as usize });
    }
    let (encrypt4, encrypt6) = build_peers(policy)?;
    let (home4, home6) = build_home(policy, geo)?;
    Ok(Compiled {
        default_action: if policy.default_action == Action::Allow { ACTION_ALLOW } else { ACTION_DENY },
        mode: if policy.mode == Mode::Audit { MODE_AUDIT } else { MODE_ENFORCE },
        v4,
        v6,
        lists,
        unknown_action: match policy.unknown_country {
            None => UNKNOWN_DEFAULT,
            Some(Action::Deny) => UNKNOWN_DENY,
            Some(Action::Allow) => UNKNOWN_ALLOW,
        },
        geo4,
        geo6,
        countries,
        encrypt4,
        encrypt6,
        home4,
        home6,
        cross_border: policy.cross_border.is_some(),
        raw_policy: policy.raw_sockets == crate::model::RawSockets::Policy,
        lookup: OnceLock::new(),
    })
}

impl Compiled {
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
