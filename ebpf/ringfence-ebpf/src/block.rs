//! Exfiltration blocks (see `ringfence_common::block`): set by the agent per (cgroup,
//! destination); consulted by the connect hooks and the packet path.
use aya_ebpf::helpers::bpf_ktime_get_ns;
use ringfence_common::{RULE_EXFIL_BLOCK, STAT_EXFIL_BLOCKED, VERDICT_DENY};

use crate::{
    maps::{bump, RF_BLOCKING, RF_BLOCKS},
    verdict::{Active, Verdict},
};

/// True if an unexpired block covers `cgroup_id` sending to `addr`. Costs one array read while
/// no block is set.
#[inline(always)]
pub fn blocked(cgroup_id: u64, addr: [u8; 16], family: u32) -> bool {
    if RF_BLOCKING.get(0).copied().unwrap_or(0) == 0 {
        return false;
    }
    let key = crate::event::dest_key(cgroup_id, addr, family);
    match RF_BLOCKS.get_ptr(&key) {
        // SAFETY: a value pointer from the map, read once.
        Some(e) => unsafe { (*e).active(bpf_ktime_get_ns()) },
        None => false,
    }
}

/// The verdict for a connection refused by a block (counted as a denial and as a block).
#[inline(always)]
pub fn block_verdict(a: &Active) -> Verdict {
    bump(STAT_EXFIL_BLOCKED);
    let cfg = a.cfg;
    Verdict {
        verdict: VERDICT_DENY,
        rule_id: RULE_EXFIL_BLOCK,
        generation: cfg.generation,
        country: 0,
        encrypt: false,
    }
}
