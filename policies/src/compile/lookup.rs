//! A userspace model of the kernel's LPM-trie walk, indexed per prefix length so that lookups
//! stay fast with hundreds of thousands of prefixes.

use std::collections::HashMap;

use ringfence_common::{GeoEntry, MatchItem, MatchList, PrefixEntry, MAX_DEPTH};

use crate::prefix::{key_of, mask};

/// One LPM trie: per prefix length (longest first) the entries keyed by masked address.
#[derive(Clone, Debug, Default)]
pub(crate) struct TrieIndex<V = PrefixEntry> {
    width: u32,
    levels: Vec<(u32, HashMap<u128, V>)>,
}

impl<V: Copy> TrieIndex<V> {
    pub fn build<const N: usize>(entries: &[([u8; N], u32, V)]) -> Self {
        let mut by_len: HashMap<u32, HashMap<u128, V>> = HashMap::new();
        for (bytes, len, entry) in entries {
            by_len.entry(*len).or_default().insert(key_of(bytes), *entry);
        }
        let mut levels: Vec<_> = by_len.into_iter().collect();
        levels.sort_by_key(|(len, _)| std::cmp::Reverse(*len));
        TrieIndex { width: (N * 8) as u32, levels }
    }

    /// The entry with the longest prefix length `<= plen` containing `addr` (a BPF LPM lookup
    /// with key prefix length `plen`).
    fn lookup(&self, addr: u128, plen: u32) -> Option<V> {
        self.levels
            .iter()
            .filter(|(len, _)| *len <= plen)
            .find_map(|(len, map)| map.get(&mask(addr, *len, self.width)).copied())
    }

    /// The entry with the longest prefix containing `addr` (an exact BPF LPM lookup).
    pub fn longest(&self, addr: u128) -> Option<V> {
        self.lookup(addr, self.width)
    }
}

impl TrieIndex<()> {
    /// An index of a value-less trie (`(address bytes, prefix length)` pairs).
    pub fn build_set<const N: usize>(prefixes: &[([u8; N], u32)]) -> Self {
        let entries: Vec<([u8; N], u32, ())> = prefixes.iter().map(|(a, l)| (*a, *l, ())).collect();
        Self::build(&entries)
    }

    /// True if some prefix contains `addr`.
    pub fn contains(&self, addr: u128) -> bool {
        self.longest(addr).is_some()
    }
}

impl TrieIndex<PrefixEntry> {
    /// The kernel walk: from the longest matching prefix to shorter ones, at most `MAX_DEPTH`
    /// lookups; the first list with an item matching `port`/`proto` decides (that item).
    pub fn walk(&self, lists: &[MatchList], addr: u128, port: u16, proto: u32) -> Option<MatchItem> {
        let mut plen = self.width;
        for _ in 0..MAX_DEPTH {
            let entry = self.lookup(addr, plen)?;
            if let Some(item) = lists.get(entry.list_id as usize).and_then(|l| l.find_item(port, proto)) {
                return Some(*item);
            }
            if entry.prefix_len == 0 {
                return None;
            }
            plen = entry.prefix_len - 1;
        }
        None
    }
}

/// The four tries of a compiled policy.
#[derive(Clone, Debug, Default)]
pub(crate) struct LookupIndex {
    pub deny4: TrieIndex,
    pub allow4: TrieIndex,
    pub deny6: TrieIndex,
    pub allow6: TrieIndex,
    pub geo4: TrieIndex<GeoEntry>,
    pub geo6: TrieIndex<GeoEntry>,
    pub encrypt4: TrieIndex<()>,
    pub encrypt6: TrieIndex<()>,
    pub home4: TrieIndex<()>,
    pub home6: TrieIndex<()>,
}
