//! The verdict shared by all hooks (see `ringfence_common::rules` for the semantics): CIDR deny
//! walk, CIDR allow walk, one geo lookup, unknown-country action, default action.
use aya_ebpf::cty::c_void;
use aya_ebpf::helpers::generated::bpf_loop;
use aya_ebpf::maps::lpm_trie::Key;
use aya_ebpf::maps::LpmTrie;
use ringfence_common::{
    verdict_proto, GeoEntry, PolicyConfig, PrefixEntry, ACTION_ALLOW, MAX_DEPTH, MAX_ITEMS, MODE_AUDIT,
    NO_LIST, RULE_DEFAULT, RULE_UNKNOWN_COUNTRY, STAT_ALLOWED, STAT_AUDITED, STAT_DENIED, UNKNOWN_ALLOW,
    UNKNOWN_DENY, VERDICT_ALLOW, VERDICT_AUDIT, VERDICT_DENY,
};

use crate::maps::*;

/// What the policy decided for one destination.
pub struct Verdict {
    pub verdict: u32,
    pub rule_id: u32,
    pub generation: u32,
    /// Packed country code of the destination if a geo entry matched, else 0.
    pub country: u32,
    /// The deciding allow rule says `encryption: required`.
    pub encrypt: bool,
}

impl Verdict {
    /// Counts a connect-time verdict (the packet path counts only its drops).
    #[inline(always)]
    pub fn count(&self) {
        bump(match self.verdict {
            VERDICT_ALLOW => STAT_ALLOWED,
            VERDICT_DENY => STAT_DENIED,
            _ => STAT_AUDITED,
        });
    }

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

/// One slot's geo trie for one address family (the CIDR tries and match lists are chosen by
/// slot inside the `bpf_loop` callbacks).
pub struct Tables<'a, const N: usize> {
    pub slot: u32,
    pub geo: &'a LpmTrie<[u8; N], GeoEntry>,
}

/// State of one trie walk, shared with the `bpf_loop` callback. The walk runs in a callback so
/// the verifier checks one step once, instead of every combination of depth and list length
/// (nested bounded loops exceed its one-million-instruction budget).
#[repr(C)]
struct Walk<const N: usize> {
    addr: [u8; N],
    /// Longest prefix length still to look at.
    plen: u32,
    port: u32,
    proto: u32,
    slot: u32,
    /// 1: the deny trie, 0: the allow trie.
    deny: u32,
    /// The deciding rule when `found` is 1, and whether it requires encryption.
    rule: u32,
    found: u32,
    encrypt: u32,
    _pad: u32,
}

/// One step: the longest entry of at most `plen` bits containing the address; stop (1) on no
/// entry, on a match, or at the root; else continue (0) with shorter prefixes.
#[inline(always)]
fn step<const N: usize>(w: &mut Walk<N>, trie: &LpmTrie<[u8; N], PrefixEntry>) -> i64 {
    let Some(entry) = trie.get(Key::new(w.plen, w.addr)) else { return 1 };
    let (entry_len, list_id) = (entry.prefix_len, entry.list_id);
    if let Some((rule, encrypt)) = find_in(w.slot, list_id, w.port as u16, w.proto) {
        w.rule = rule;
        w.encrypt = encrypt as u32;
        w.found = 1;
        return 1;
    }
    if entry_len == 0 {
        return 1;
    }
    w.plen = entry_len - 1;
    0
}

extern "C" fn walk4_step(_index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the pointer to the caller's `Walk<4>`.
    let w = unsafe { &mut *(ctx as *mut Walk<4>) };
    match (w.slot, w.deny) {
        (0, 1) => step(w, &RF_DENY4_0),
        (0, _) => step(w, &RF_ALLOW4_0),
        (_, 1) => step(w, &RF_DENY4_1),
        _ => step(w, &RF_ALLOW4_1),
    }
}

extern "C" fn walk6_step(_index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the pointer to the caller's `Walk<16>`.
    let w = unsafe { &mut *(ctx as *mut Walk<16>) };
    match (w.slot, w.deny) {
        (0, 1) => step(w, &RF_DENY6_0),
        (0, _) => step(w, &RF_ALLOW6_0),
        (_, 1) => step(w, &RF_DENY6_1),
        _ => step(w, &RF_ALLOW6_1),
    }
}

/// State of a match-list search: one `bpf_loop` iteration per item, so the verifier checks one
/// item once per call site instead of unrolling all [`MAX_ITEMS`] (verification time and the
/// one-million-instruction budget are what this saves).
#[repr(C)]
struct Find {
    slot: u32,
    list_id: u32,
    port: u32,
    proto: u32,
    rule: u32,
    encrypt: u32,
    found: u32,
    _pad: u32,
}

extern "C" fn item_step(index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the pointer to the caller's `Find`.
    let f = unsafe { &mut *(ctx as *mut Find) };
    let lists = if f.slot == 0 { &RF_LISTS_0 } else { &RF_LISTS_1 };
    let Some(list) = lists.get(f.list_id) else { return 1 };
    let i = index as usize;
    if i >= MAX_ITEMS || i >= list.len as usize {
        return 1;
    }
    let item = &list.items[i];
    if item.matches(f.port as u16, f.proto) {
        f.rule = item.rule_id;
        f.encrypt = item.encrypt() as u32;
        f.found = 1;
        return 1;
    }
    0
}

/// (rule id, encryption required) of the first item of a slot's list matching (port, proto).
#[inline(always)]
fn find_in(slot: u32, list_id: u32, port: u16, proto: u32) -> Option<(u32, bool)> {
    if list_id == NO_LIST {
        return None;
    }
    let mut f = Find { slot, list_id, port: port as u32, proto, rule: 0, encrypt: 0, found: 0, _pad: 0 };
    // SAFETY: the callback matches bpf_loop's contract and only touches `f` through ctx.
    unsafe {
        bpf_loop(
            MAX_ITEMS as u32,
            item_step as *const () as *mut c_void,
            &mut f as *mut Find as *mut c_void,
            0,
        )
    };
    (f.found == 1).then_some((f.rule, f.encrypt == 1))
}

/// Walks one CIDR trie from the longest matching prefix to shorter ones (at most `MAX_DEPTH`);
/// returns (rule id, encryption required) of the first prefix whose match list accepts
/// (port, proto).
#[inline(always)]
fn walk<const N: usize>(slot: u32, deny: bool, addr: [u8; N], port: u16, proto: u32) -> Option<(u32, bool)> {
    let mut w = Walk {
        addr,
        plen: (N * 8) as u32,
        port: port as u32,
        proto,
        slot,
        deny: deny as u32,
        rule: 0,
        found: 0,
        encrypt: 0,
        _pad: 0,
    };
    let callback = if N == 4 { walk4_step as *const () } else { walk6_step as *const () };
    // SAFETY: the callback matches bpf_loop's contract and only touches `w` through ctx.
    unsafe { bpf_loop(MAX_DEPTH, callback as *mut c_void, &mut w as *mut Walk<N> as *mut c_void, 0) };
    (w.found == 1).then_some((w.rule, w.encrypt == 1))
}

/// What the rules say before the mode is applied.
struct Outcome {
    deny: bool,
    rule: u32,
    country: u32,
    encrypt: bool,
}

#[inline(always)]
fn outcome(deny: bool, rule: u32, country: u32, encrypt: bool) -> Outcome {
    Outcome { deny, rule, country, encrypt }
}

#[inline(always)]
fn rules<const N: usize>(t: &Tables<N>, cfg: &PolicyConfig, addr: [u8; N], port: u16, proto: u32) -> Outcome {
    if let Some((rule, _)) = walk(t.slot, true, addr, port, proto) {
        return outcome(true, rule, 0, false);
    }
    if let Some((rule, encrypt)) = walk(t.slot, false, addr, port, proto) {
        return outcome(false, rule, 0, encrypt);
    }
    let default_deny = cfg.default_action != ACTION_ALLOW;
    match t.geo.get(Key::new((N * 8) as u32, addr)) {
        Some(g) => {
            let (deny_list, allow_list, country) = (g.deny_list, g.allow_list, g.country);
            if let Some((rule, _)) = find_in(t.slot, deny_list, port, proto) {
                outcome(true, rule, country, false)
            } else if let Some((rule, encrypt)) = find_in(t.slot, allow_list, port, proto) {
                outcome(false, rule, country, encrypt)
            } else {
                outcome(default_deny, RULE_DEFAULT, country, false)
            }
        }
        None => match cfg.unknown_action {
            UNKNOWN_DENY => outcome(true, RULE_UNKNOWN_COUNTRY, 0, false),
            UNKNOWN_ALLOW => outcome(false, RULE_UNKNOWN_COUNTRY, 0, false),
            _ => outcome(default_deny, RULE_DEFAULT, 0, false),
        },
    }
}

#[inline(always)]
fn decide<const N: usize>(
    t: &Tables<N>,
    cfg: &PolicyConfig,
    addr: [u8; N],
    port: u16,
    proto: u32,
) -> Verdict {
    let Outcome { deny, rule: rule_id, country, encrypt } = rules(t, cfg, addr, port, proto);
    let verdict = match (deny, cfg.mode == MODE_AUDIT) {
        (false, _) => VERDICT_ALLOW,
        (true, false) => VERDICT_DENY,
        (true, true) => VERDICT_AUDIT,
    };
    Verdict { verdict, rule_id, generation: cfg.generation, country, encrypt }
}

/// The active slot and its config. A missing config reads as zeroed: deny (fail closed).
#[inline(always)]
pub fn active() -> (u32, PolicyConfig) {
    let slot = RF_ACTIVE.get(0).copied().unwrap_or(0) & 1;
    let cfg = RF_CONFIG.get(slot).copied().unwrap_or_default();
    (slot, cfg)
}

/// A verdict that is not the rules' (a refused socket, an undecidable source route): deny,
/// or audit-deny under an audit-mode policy.
#[inline(always)]
pub fn refusal(rule_id: u32) -> Verdict {
    let (_, cfg) = active();
    let verdict = if cfg.mode == MODE_AUDIT { VERDICT_AUDIT } else { VERDICT_DENY };
    Verdict { verdict, rule_id, generation: cfg.generation, country: 0, encrypt: false }
}

/// Verdict for an IPv4 destination (address bytes in network order). ICMPv6 is decided as ICMP;
/// callers pass port 0 for ICMP (an echo identifier is no port: port entries never match ICMP).
#[inline(always)]
pub fn decide_v4(addr: [u8; 4], port: u16, proto: u32) -> Verdict {
    let proto = verdict_proto(proto);
    let (slot, cfg) = active();
    let t = if slot == 0 { Tables { slot, geo: &RF_GEO4_0 } } else { Tables { slot, geo: &RF_GEO4_1 } };
    decide(&t, &cfg, addr, port, proto)
}

/// Verdict for an IPv6 destination; IPv4-mapped addresses are decided as IPv4.
#[inline(always)]
pub fn decide_v6(addr: [u8; 16], port: u16, proto: u32) -> (Verdict, bool) {
    if let Some(v4) = ipv4_mapped(&addr) {
        return (decide_v4(v4, port, proto), true);
    }
    (decide_wire_v6(addr, port, proto), false)
}

/// Verdict for the destination of an IPv6 packet on the wire, where an IPv4-mapped address is
/// not routable and decided as the IPv6 address it is (one instance of the verdict code fewer
/// for the verifier than [`decide_v6`]).
#[inline(always)]
pub fn decide_wire_v6(addr: [u8; 16], port: u16, proto: u32) -> Verdict {
    let proto = verdict_proto(proto);
    let (slot, cfg) = active();
    let t = if slot == 0 { Tables { slot, geo: &RF_GEO6_0 } } else { Tables { slot, geo: &RF_GEO6_1 } };
    decide(&t, &cfg, addr, port, proto)
}

#[inline(always)]
pub fn ipv4_mapped(a: &[u8; 16]) -> Option<[u8; 4]> {
    let zero = a[0] | a[1] | a[2] | a[3] | a[4] | a[5] | a[6] | a[7] | a[8] | a[9];
    if zero == 0 && a[10] == 0xff && a[11] == 0xff {
        Some([a[12], a[13], a[14], a[15]])
    } else {
        None
    }
}
