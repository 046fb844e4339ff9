//! Writing one policy's tables: the slot the kernel is not reading is filled (CIDR tries, geo
//! tries, match lists, must-encrypt and home sets, settings, for egress and ingress), then the
//! policy's slot entry flips.
use aya::maps::lpm_trie::Key;
use ringfence_common::{
    key4, key6, key_table, table_id, GeoInfo, ListKey, PolicyConfig, ACTION_ALLOW, ACTIVE_MAP, ALLOW_V4_MAP,
    ALLOW_V6_MAP, CONFIG_CROSS_BORDER, CONFIG_MAP, CONFIG_OPEN, CONFIG_RAW_POLICY, DENY_V4_MAP, DENY_V6_MAP,
    DIR_EGRESS, DIR_INGRESS, ENCRYPT_V4_MAP, ENCRYPT_V6_MAP, GEO_INFO_MAP, GEO_V4_MAP, GEO_V6_MAP,
    HOME_V4_MAP, HOME_V6_MAP, LIST_MAP, MODE_ENFORCE, TABLE_BITS, UNKNOWN_DEFAULT,
};
use ringfence_policy::Compiled;

use super::{PinnedMaps, Trie};
use crate::error::AgentError;

/// Prefix lists (e.g. must-encrypt destinations) as trie entries with an unused value.
fn as_set<const N: usize>(prefixes: &[([u8; N], u32)]) -> Vec<([u8; N], u32, u32)> {
    prefixes.iter().map(|(a, l)| (*a, *l, 0)).collect()
}

fn k4(table: u32) -> impl Fn(&[u8; 4]) -> [u8; 8] {
    move |a| key4(table, *a)
}

fn k6(table: u32) -> impl Fn(&[u8; 16]) -> [u8; 20] {
    move |a| key6(table, *a)
}

/// The settings of a compiled table.
fn config(c: &Compiled, generation: u32) -> PolicyConfig {
    PolicyConfig {
        default_action: c.default_action,
        mode: c.mode,
        generation,
        unknown_action: c.unknown_action,
        flags: if c.cross_border { CONFIG_CROSS_BORDER } else { 0 }
            | if c.raw_policy { CONFIG_RAW_POLICY } else { 0 },
        _reserved: 0,
    }
}

impl PinnedMaps {
    /// Writes `egress` (built with the database described by `geo`) and `ingress` (`None`: the
    /// policy has no ingress rules, everything inbound is allowed) into `policy`'s inactive slot
    /// under a new generation and makes that slot active. Returns the generation.
    pub fn apply(
        &mut self,
        policy: u32,
        egress: &Compiled,
        ingress: Option<&Compiled>,
        geo: &GeoInfo,
    ) -> Result<u32, AgentError> {
        let generation = self.next_generation();
        let (cur, _) = self.active(policy)?;
        let next = cur ^ 1;
        self.fill_table(table_id(policy, next, DIR_EGRESS), egress, geo, config(egress, generation))?;
        let inbound = table_id(policy, next, DIR_INGRESS);
        match ingress {
            Some(c) => self.fill_table(inbound, c, geo, config(c, generation))?,
            None => {
                let allow_all = PolicyConfig {
                    default_action: ACTION_ALLOW,
                    mode: MODE_ENFORCE,
                    generation,
                    unknown_action: UNKNOWN_DEFAULT,
                    flags: CONFIG_OPEN,
                    _reserved: 0,
                };
                self.fill_table(inbound, &Compiled::empty(), &GeoInfo::default(), allow_all)?;
            }
        }
        // The switch: one array write, atomic for the programs.
        self.active.set(policy, next, 0).map_err(|e| AgentError::map(ACTIVE_MAP, e))?;
        Ok(generation)
    }

    /// Empties both slots of `policy` (its settings zeroed: a cgroup still mapped to it would be
    /// denied everything). Callers remove the policy's workload entries first.
    pub fn clear_policy(&mut self, policy: u32) -> Result<(), AgentError> {
        for slot in 0..2 {
            for dir in [DIR_EGRESS, DIR_INGRESS] {
                let zero = PolicyConfig::default();
                self.fill_table(table_id(policy, slot, dir), &Compiled::empty(), &GeoInfo::default(), zero)?;
            }
        }
        Ok(())
    }

    fn fill_table(
        &mut self,
        table: u32,
        c: &Compiled,
        geo: &GeoInfo,
        cfg: PolicyConfig,
    ) -> Result<(), AgentError> {
        fill(&mut self.deny4, table, &c.v4.deny, k4(table), DENY_V4_MAP)?;
        fill(&mut self.allow4, table, &c.v4.allow, k4(table), ALLOW_V4_MAP)?;
        fill(&mut self.deny6, table, &c.v6.deny, k6(table), DENY_V6_MAP)?;
        fill(&mut self.allow6, table, &c.v6.allow, k6(table), ALLOW_V6_MAP)?;
        fill(&mut self.geo4, table, &c.geo4, k4(table), GEO_V4_MAP)?;
        fill(&mut self.geo6, table, &c.geo6, k6(table), GEO_V6_MAP)?;
        self.geo_info.set(table, geo, 0).map_err(|e| AgentError::map(GEO_INFO_MAP, e))?;
        fill(&mut self.enc4, table, &as_set(&c.encrypt4), k4(table), ENCRYPT_V4_MAP)?;
        fill(&mut self.enc6, table, &as_set(&c.encrypt6), k6(table), ENCRYPT_V6_MAP)?;
        fill(&mut self.home4, table, &as_set(&c.home4), k4(table), HOME_V4_MAP)?;
        fill(&mut self.home6, table, &as_set(&c.home6), k6(table), HOME_V6_MAP)?;
        self.fill_lists(table, c)?;
        self.config.set(table, cfg, 0).map_err(|e| AgentError::map(CONFIG_MAP, e))
    }

    fn fill_lists(&mut self, table: u32, c: &Compiled) -> Result<(), AgentError> {
        let stale: Vec<ListKey> = self
            .lists
            .keys()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| AgentError::map(LIST_MAP, e))?
            .into_iter()
            .filter(|k| k.table == table && k.list as usize >= c.lists.len())
            .collect();
        for k in stale {
            self.lists.remove(&k).map_err(|e| AgentError::map(LIST_MAP, e))?;
        }
        for (i, list) in c.lists.iter().enumerate() {
            let key = ListKey { table, list: i as u32 };
            self.lists.insert(key, list, 0).map_err(|e| AgentError::map(LIST_MAP, e))?;
        }
        Ok(())
    }
}

/// Replaces the entries of `table` in a shared trie with `entries` (address, prefix length,
/// value): the table's stale keys removed, the rest upserted; other tables untouched.
fn fill<const N: usize, const K: usize, V: aya::Pod>(
    trie: &mut Trie<K, V>,
    table: u32,
    entries: &[([u8; N], u32, V)],
    key: impl Fn(&[u8; N]) -> [u8; K],
    name: &str,
) -> Result<(), AgentError>
where
    [u8; K]: aya::Pod,
{
    let wanted: std::collections::HashSet<(u32, [u8; K])> =
        entries.iter().map(|(a, l, _)| (TABLE_BITS + *l, key(a))).collect();
    let stale: Vec<Key<[u8; K]>> = trie
        .keys()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| AgentError::map(name, e))?
        .into_iter()
        .filter(|k| key_table(&k.data()) == table && !wanted.contains(&(k.prefix_len(), k.data())))
        .collect();
    for k in stale {
        trie.remove(&k).map_err(|e| AgentError::map(name, e))?;
    }
    for (addr, len, entry) in entries {
        trie.insert(&Key::new(TABLE_BITS + *len, key(addr)), entry, 0)
            .map_err(|e| AgentError::map(name, e))?;
    }
    Ok(())
}
