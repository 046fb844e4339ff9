//! The table a policy's programs read now: its active slot (`RF_SLOTS`) and that table's
//! settings (`RF_TABLECFG`). Used by the verdict and by DNS learning.
use ringfence_common::{table_id, PolicyConfig, DIR_EGRESS};

use crate::maps::{RF_SLOTS, RF_TABLECFG};

/// The table a policy's programs read now (one direction of its active slot) and its settings.
/// A table the agent never wrote reads as a zeroed config: deny (fail closed).
#[derive(Clone, Copy)]
pub struct Active {
    pub table: u32,
    pub cfg: PolicyConfig,
}

/// The active egress table of `policy`.
#[inline(always)]
pub fn active(policy: u32) -> Active {
    active_dir(policy, DIR_EGRESS)
}

/// The active table of `policy` for direction `dir`.
#[inline(always)]
pub fn active_dir(policy: u32, dir: u32) -> Active {
    let table = active_table(policy, dir);
    Active { table, cfg: RF_TABLECFG.get(table).copied().unwrap_or_default() }
}

/// The id of `policy`'s active table for direction `dir`, without its settings.
#[inline(always)]
pub fn active_table(policy: u32, dir: u32) -> u32 {
    table_id(policy, RF_SLOTS.get(policy).copied().unwrap_or(0), dir)
}
