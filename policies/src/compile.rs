//! Compilation of a [`Policy`] into the kernel's data: per family and action an LPM trie of
//! prefixes, each pointing at a shared, deduplicated [`MatchList`]. Sans-IO: the agent writes the
//! result into the maps.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::OnceLock;

use ipnet::IpNet;
use ringfence_common::{
    MatchItem, MatchList, PrefixEntry, ACTION_ALLOW, ACTION_DENY, MAX_DEPTH, MAX_ITEMS, MAX_LISTS,
    MAX_PREFIXES_V4, MAX_PREFIXES_V6, MODE_AUDIT, MODE_ENFORCE, PROTO_ANY, RULE_DEFAULT,
};

use crate::compile_lookup::{deepest_chain, key_of, LookupIndex, TrieIndex};
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
    /// Match lists shared by both families, indexed by [`PrefixEntry::list_id`].
    pub lists: Vec<MatchList>,
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
}

/// (masked address, prefix length, item), in rule id order.
type Entries = Vec<(u128, u32, MatchItem)>;

fn items_of(rule: &Rule) -> Vec<MatchItem> {
    if rule.ports.is_empty() {
        return vec![MatchItem { port_lo: 0, port_hi: 65535, proto: PROTO_ANY, rule_id: rule.id }];
    }
    let items = rule.ports.iter().map(|p| MatchItem {
        port_lo: p.lo,
        port_hi: p.hi,
        proto: p.protocol.to_kernel(),
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
            _ => *dedup.entry(list).or_insert_with(|| {
                lists.push(list);
                (lists.len() - 1) as u32
            }),
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
pub fn compile(policy: &Policy) -> Result<Compiled, CompileError> {
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
    if lists.len() > MAX_LISTS as usize {
        return Err(CompileError::TooManyLists { lists: lists.len(), max: MAX_LISTS as usize });
    }
    Ok(Compiled {
        default_action: if policy.default_action == Action::Allow { ACTION_ALLOW } else { ACTION_DENY },
        mode: if policy.mode == Mode::Audit { MODE_AUDIT } else { MODE_ENFORCE },
        v4,
        v6,
        lists,
        lookup: OnceLock::new(),
    })
}

impl Compiled {
    /// Total number of trie entries (both families, both actions).
    pub fn prefix_count(&self) -> usize {
        self.v4.deny.len() + self.v4.allow.len() + self.v6.deny.len() + self.v6.allow.len()
    }

    /// A userspace model of the kernel verdict. For the deny trie, then the allow trie: look up
    /// the longest prefix containing the address, take the first item of its list matching
    /// `port`/`proto`; if none, continue with prefixes shorter than that one (at most
    /// `MAX_DEPTH` lookups). Returns (`ACTION_*`, rule id or `RULE_DEFAULT`).
    /// `proto` is a `PROTO_*` value; IPv4-mapped IPv6 addresses are evaluated as IPv4. The mode
    /// is not applied (as in the kernel, audit handling happens after the verdict).
    pub fn evaluate(&self, addr: IpAddr, port: u16, proto: u32) -> (u32, u32) {
        let index = self.lookup.get_or_init(|| LookupIndex {
            deny4: TrieIndex::build(&self.v4.deny),
            allow4: TrieIndex::build(&self.v4.allow),
            deny6: TrieIndex::build(&self.v6.deny),
            allow6: TrieIndex::build(&self.v6.allow),
        });
        let (deny, allow, key) = match normalize_addr(addr) {
            IpAddr::V4(a) => (&index.deny4, &index.allow4, key_of(&a.octets())),
            IpAddr::V6(a) => (&index.deny6, &index.allow6, key_of(&a.octets())),
        };
        if let Some(rule) = deny.walk(&self.lists, key, port, proto) {
            (ACTION_DENY, rule)
        } else if let Some(rule) = allow.walk(&self.lists, key, port, proto) {
            (ACTION_ALLOW, rule)
        } else {
            (self.default_action, RULE_DEFAULT)
        }
    }
}
