//! Writing one policy's tables: the slot the kernel is not reading is filled (CIDR tries, geo
//! tries, match lists, must-encrypt and home sets, domain names and resolvers, settings, for
//! egress and ingress), then the
//! policy's slot entry flips.
use ringfence_common::{
    key4, key6, table_id, GeoInfo, ListKey, PolicyConfig, ACTION_ALLOW, ACTIVE_MAP, BUDGET_CONFIG_MAP,
    CONFIG_CROSS_BORDER, CONFIG_DNS, CONFIG_MAP, CONFIG_OPEN, CONFIG_RAW_POLICY, DIR_EGRESS, DIR_INGRESS,
    GEO_INFO_MAP, LIST_MAP, MODE_ENFORCE, UNKNOWN_DEFAULT,
};
use ringfence_policy::{compile::CompiledBudgets, Compiled};

use super::PinnedMaps;
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
            | if c.raw_policy { CONFIG_RAW_POLICY } else { 0 }
            | if c.dns { CONFIG_DNS } else { 0 },
        ttl_floor: c.ttl_floor,
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
                    ttl_floor: 0,
                };
                self.fill_table(inbound, &Compiled::empty(), &GeoInfo::default(), allow_all)?;
            }
        }
        // The switch: one array write, atomic for the programs.
        self.active.set(policy, next, 0).map_err(|e| AgentError::map(ACTIVE_MAP, e))?;
        Ok(generation)
    }

    /// Empties both slots of `policy` (its settings zeroed: a cgroup still mapped to it would be
    /// denied everything). Callers remove the policy's workload entries first. The emptied
    /// tables get a fresh generation rather than 0, so that generations never go back, across
    /// agent restarts too ([`PinnedMaps::max_generation`]): the kernel's verdict cache keys on them.
    pub fn clear_policy(&mut self, policy: u32) -> Result<(), AgentError> {
        let generation = self.next_generation();
        for slot in 0..2 {
            for dir in [DIR_EGRESS, DIR_INGRESS] {
                let zero = PolicyConfig { generation, ..PolicyConfig::default() };
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
        self.deny4.fill(table, &c.v4.deny, k4(table))?;
        self.allow4.fill(table, &c.v4.allow, k4(table))?;
        self.deny6.fill(table, &c.v6.deny, k6(table))?;
        self.allow6.fill(table, &c.v6.allow, k6(table))?;
        self.geo4.fill(table, &c.geo4, k4(table))?;
        self.geo6.fill(table, &c.geo6, k6(table))?;
        self.geo_info.set(table, geo, 0).map_err(|e| AgentError::map(GEO_INFO_MAP, e))?;
        self.enc4.fill(table, &as_set(&c.encrypt4), k4(table))?;
        self.enc6.fill(table, &as_set(&c.encrypt6), k6(table))?;
        self.home4.fill(table, &as_set(&c.home4), k4(table))?;
        self.home6.fill(table, &as_set(&c.home6), k6(table))?;
        self.fill_lists(table, c)?;
        self.dns.fill(table, c)?;
        self.fill_budgets(table, c)?;
        self.config.set(table, cfg, 0).map_err(|e| AgentError::map(CONFIG_MAP, e))
    }

    /// The table's approved sinks and budget settings (zeroed: no budgets).
    fn fill_budgets(&mut self, table: u32, c: &Compiled) -> Result<(), AgentError> {
        let none = CompiledBudgets::default();
        let b = c.budgets.as_ref().unwrap_or(&none);
        self.sink4.fill(table, &as_set(&b.sink4), k4(table))?;
        self.sink6.fill(table, &as_set(&b.sink6), k6(table))?;
        self.budget_cfg.set(table, b.config, 0).map_err(|e| AgentError::map(BUDGET_CONFIG_MAP, e))
    }

    fn fill_lists(&mut self, table: u32, c: &Compiled) -> Result<(), AgentError> {
        if self.list_counts.is_none() {
            let mut counts = std::collections::HashMap::<u32, u32>::new();
            for k in self.lists.keys() {
                let k = k.map_err(|e| AgentError::map(LIST_MAP, e))?;
                let n = counts.entry(k.table).or_default();
                *n = (*n).max(k.list + 1);
            }
            self.list_counts = Some(counts);
        }
        let had = self.list_counts.as_ref().and_then(|c| c.get(&table).copied()).unwrap_or(0);
        for list in c.lists.len() as u32..had {
            match self.lists.remove(&ListKey { table, list }) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(e) => return Err(AgentError::map(LIST_MAP, e)),
            }
        }
        for (i, list) in c.lists.iter().enumerate() {
            let key = ListKey { table, list: i as u32 };
            self.lists.insert(key, list, 0).map_err(|e| AgentError::map(LIST_MAP, e))?;
        }
        self.list_counts.as_mut().expect("loaded above").insert(table, c.lists.len() as u32);
        Ok(())
    }
}
