//! A trie shared by every table, with an index of its keys by table kept in the agent: replacing
//! one table's entries then costs that table's size, not the size of every policy on the node
//! (the index is read from the kernel once, on first use, so an agent adopting pinned maps
//! starts from what they hold).
use std::collections::{HashMap, HashSet};

use aya::maps::{
    lpm_trie::{Key, LpmTrie},
    MapData, MapError,
};
use ringfence_common::{key_table, PrefixEntry, TABLE_BITS};

use crate::error::AgentError;

/// A trie keyed by table id and address (`K` = 8 or 20 key bytes).
pub type Trie<const K: usize, V = PrefixEntry> = LpmTrie<MapData, [u8; K], V>;

/// (prefix length including the table bits, key bytes).
type KeyId<const K: usize> = (u32, [u8; K]);

pub struct Mirrored<const K: usize, V> {
    pub map: Trie<K, V>,
    name: &'static str,
    keys: Option<HashMap<u32, HashSet<KeyId<K>>>>,
}

impl<const K: usize, V: aya::Pod> Mirrored<K, V>
where
    [u8; K]: aya::Pod,
{
    pub fn new(map: Trie<K, V>, name: &'static str) -> Self {
        Self { map, name, keys: None }
    }

    fn load(&self) -> Result<HashMap<u32, HashSet<KeyId<K>>>, AgentError> {
        let mut by_table: HashMap<u32, HashSet<KeyId<K>>> = HashMap::new();
        for k in self.map.keys() {
            let k = k.map_err(|e| AgentError::map(self.name, e))?;
            by_table.entry(key_table(&k.data())).or_default().insert((k.prefix_len(), k.data()));
        }
        Ok(by_table)
    }

    /// Replaces the entries of `table` with `entries` (address, prefix length, value) whose
    /// keys `key` builds: the table's stale keys removed, the rest upserted.
    pub fn fill<const N: usize>(
        &mut self,
        table: u32,
        entries: &[([u8; N], u32, V)],
        key: impl Fn(&[u8; N]) -> [u8; K],
    ) -> Result<(), AgentError> {
        if self.keys.is_none() {
            self.keys = Some(self.load()?);
        }
        let (map, name) = (&mut self.map, self.name);
        let current = self.keys.as_mut().expect("loaded above").entry(table).or_default();
        let wanted: HashSet<KeyId<K>> = entries.iter().map(|(a, l, _)| (TABLE_BITS + *l, key(a))).collect();
        for (len, data) in current.difference(&wanted) {
            match map.remove(&Key::new(*len, *data)) {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                Err(e) => return Err(AgentError::map(name, e)),
            }
        }
        for (addr, len, entry) in entries {
            map.insert(&Key::new(TABLE_BITS + *len, key(addr)), entry, 0)
                .map_err(|e| AgentError::map(name, e))?;
        }
        *current = wanted;
        Ok(())
    }
}
