//! The CIDR tries: every (rule, CIDR) of one family and action grouped by exact prefix into
//! deduplicated match lists, with the kernel's limits on items, prefixes and nesting depth.

use std::collections::HashMap;

use ipnet::IpNet;
use ringfence_common::{
    MatchItem, MatchList, PrefixEntry, ITEM_ENCRYPT, MAX_DEPTH, MAX_ITEMS, MAX_PREFIXES_V4, MAX_PREFIXES_V6,
    PROTO_ANY,
};

use super::error::CompileError;
use crate::model::{Action, Policy, Rule};
use crate::prefix::{key_to_net, mask, to_bytes};

/// (masked address, prefix length, item), in rule id order.
pub(super) type Entries = Vec<(u128, u32, MatchItem)>;

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

/// The id of `list` in `lists`, adding it if it is new.
pub(crate) fn intern(
    list: MatchList,
    dedup: &mut HashMap<MatchList, u32>,
    lists: &mut Vec<MatchList>,
) -> u32 {
    *dedup.entry(list).or_insert_with(|| {
        lists.push(list);
        (lists.len() - 1) as u32
    })
}

/// The deepest chain of nested prefixes among `(masked address, prefix length)` pairs, which must
/// be sorted by address then length. Returns the depth and the chain (outermost first).
fn deepest_chain(sorted: &[(u128, u32)], width: u32) -> Vec<(u128, u32)> {
    let mut stack: Vec<(u128, u32)> = Vec::new();
    let mut deepest: Vec<(u128, u32)> = Vec::new();
    for &(addr, len) in sorted {
        while let Some(&(top, top_len)) = stack.last() {
            if top_len <= len && mask(addr, top_len, width) == top {
                break;
            }
            stack.pop();
        }
        stack.push((addr, len));
        if stack.len() > deepest.len() {
            deepest = stack.clone();
        }
    }
    deepest
}

/// Builds one trie: groups items by exact prefix, checks item count and nesting depth, and
/// assigns deduplicated list ids.
pub(super) fn build_trie<const N: usize>(
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
        out.push((to_bytes(addr), len, PrefixEntry { prefix_len: len, list_id }));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_depth() {
        let sorted =
            [(0x0A00_0000, 8), (0x0A00_0000, 16), (0x0A00_0000, 24), (0x0A01_0000, 16), (0x0B00_0000, 8)];
        let chain = deepest_chain(&sorted, 32);
        assert_eq!(chain, vec![(0x0A00_0000, 8), (0x0A00_0000, 16), (0x0A00_0000, 24)]);
    }
}
