//! The verdict walk shared by all hooks (see `ringfence_common::rules` for the semantics).
use aya_ebpf::maps::lpm_trie::Key;
use aya_ebpf::maps::LpmTrie;
use ringfence_common::{
    PolicyConfig, PrefixEntry, ACTION_ALLOW, MAX_DEPTH, MODE_AUDIT, RULE_DEFAULT, STAT_ALLOWED, STAT_AUDITED,
    STAT_DENIED, VERDICT_ALLOW, VERDICT_AUDIT, VERDICT_DENY,
};

use crate::maps::*;

/// What the policy decided for one destination.
pub struct Verdict {
    pub verdict: u32,
    pub rule_id: u32,
    pub generation: u32,
}

impl Verdict {
    /// The return value for a cgroup sock_addr program: 1 lets the call proceed, 0 fails it with
    /// EPERM.
    #[inline(always)]
    pub fn retval(&self) -> i32 {
        if self.verdict == VERDICT_DENY {
            0
        } else {
            1
        }
    }
}

/// Walks one trie from the longest matching prefix to shorter ones; returns the rule id of the
/// first prefix whose match list accepts (port, proto).
#[inline(always)]
fn walk<const N: usize>(
    trie: &LpmTrie<[u8; N], PrefixEntry>,
    lists: &Lists,
    addr: [u8; N],
    port: u16,
    proto: u32,
) -> Option<u32> {
    let mut plen = (N * 8) as u32;
    for _ in 0..MAX_DEPTH {
        let entry = trie.get(Key::new(plen, addr))?;
        let (entry_len, list_id) = (entry.prefix_len, entry.list_id);
        if let Some(list) = lists.get(list_id) {
            if let Some(rule) = list.find(port, proto) {
                return Some(rule);
            }
        }
        if entry_len == 0 {
            return None;
        }
        plen = entry_len - 1;
    }
    None
}

#[inline(always)]
fn decide<const N: usize>(
    deny: &LpmTrie<[u8; N], PrefixEntry>,
    allow: &LpmTrie<[u8; N], PrefixEntry>,
    lists: &Lists,
    cfg: &PolicyConfig,
    addr: [u8; N],
    port: u16,
    proto: u32,
) -> Verdict {
    let (deny_hit, rule_id) = if let Some(rule) = walk(deny, lists, addr, port, proto) {
        (true, rule)
    } else if let Some(rule) = walk(allow, lists, addr, port, proto) {
        (false, rule)
    } else {
        (cfg.default_action != ACTION_ALLOW, RULE_DEFAULT)
    };
    let verdict = match (deny_hit, cfg.mode == MODE_AUDIT) {
        (false, _) => VERDICT_ALLOW,
        (true, false) => VERDICT_DENY,
        (true, true) => VERDICT_AUDIT,
    };
    bump(match verdict {
        VERDICT_ALLOW => STAT_ALLOWED,
        VERDICT_DENY => STAT_DENIED,
        _ => STAT_AUDITED,
    });
    Verdict { verdict, rule_id, generation: cfg.generation }
}

/// The active slot and its config. A missing config reads as zeroed: deny (fail closed).
#[inline(always)]
fn active() -> (u32, PolicyConfig) {
    let slot = RF_ACTIVE.get(0).copied().unwrap_or(0) & 1;
    let cfg = RF_CONFIG.get(slot).copied().unwrap_or_default();
    (slot, cfg)
}

/// Verdict for an IPv4 destination (address bytes in network order).
#[inline(always)]
pub fn decide_v4(addr: [u8; 4], port: u16, proto: u32) -> Verdict {
    let (slot, cfg) = active();
    if slot == 0 {
        decide(&RF_DENY4_0, &RF_ALLOW4_0, &RF_LISTS_0, &cfg, addr, port, proto)
    } else {
        decide(&RF_DENY4_1, &RF_ALLOW4_1, &RF_LISTS_1, &cfg, addr, port, proto)
    }
}

/// Verdict for an IPv6 destination; IPv4-mapped addresses are decided as IPv4.
#[inline(always)]
pub fn decide_v6(addr: [u8; 16], port: u16, proto: u32) -> (Verdict, bool) {
    if let Some(v4) = ipv4_mapped(&addr) {
        return (decide_v4(v4, port, proto), true);
    }
    let (slot, cfg) = active();
    let v = if slot == 0 {
        decide(&RF_DENY6_0, &RF_ALLOW6_0, &RF_LISTS_0, &cfg, addr, port, proto)
    } else {
        decide(&RF_DENY6_1, &RF_ALLOW6_1, &RF_LISTS_1, &cfg, addr, port, proto)
    };
    (v, false)
}

#[inline(always)]
fn ipv4_mapped(a: &[u8; 16]) -> Option<[u8; 4]> {
    let zero = a[0] | a[1] | a[2] | a[3] | a[4] | a[5] | a[6] | a[7] | a[8] | a[9];
    if zero == 0 && a[10] == 0xff && a[11] == 0xff {
        Some([a[12], a[13], a[14], a[15]])
    } else {
        None
    }
}
