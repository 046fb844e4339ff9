//! The verdict shared by all hooks (see `ringfence_common::rules` for the semantics): CIDR deny
//! walk, CIDR allow walk, one geo lookup, unknown-country action, default action.
use aya_ebpf::cty::c_void;
use aya_ebpf::helpers::generated::bpf_loop;
use aya_ebpf::maps::lpm_trie::Key;
use aya_ebpf::maps::LpmTrie;
use ringfence_common::{
    key4, key6, verdict_proto, ListKey, PrefixEntry, ACTION_ALLOW, CONFIG_DNS, MAX_DEPTH, MAX_ITEMS,
    MODE_AUDIT, NO_LIST, RULE_DEFAULT, RULE_DNS_PINNED, RULE_DNS_RESOLVER, RULE_UNKNOWN_COUNTRY,
    STAT_ALLOWED, STAT_AUDITED, STAT_DENIED, TABLE_BITS, UNKNOWN_ALLOW, UNKNOWN_DENY, VERDICT_ALLOW,
    VERDICT_AUDIT, VERDICT_DENY,
};

pub use crate::active::{active, active_dir, Active};
use crate::dns::{learned_list, pinning, DnsDest, PIN_ALLOW, PIN_NONE};
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
    table: u32,
    /// 1: the deny trie, 0: the allow trie.
    deny: u32,
    /// The deciding rule when `found` is 1, and whether it requires encryption.
    rule: u32,
    found: u32,
    encrypt: u32,
    _pad: u32,
}

/// One step: the longest entry of at most `plen` bits containing the address; stop (1) on no
/// entry, on a match, or at the root; else continue (0) with shorter prefixes. `key` is the
/// table's key of the address.
#[inline(always)]
fn step<const N: usize, const K: usize>(
    w: &mut Walk<N>,
    trie: &LpmTrie<[u8; K], PrefixEntry>,
    key: [u8; K],
) -> i64 {
    let Some(entry) = trie.get(Key::new(TABLE_BITS + w.plen, key)) else { return 1 };
    let (entry_len, list_id) = (entry.prefix_len, entry.list_id);
    if let Some((rule, encrypt)) = find_in(w.table, list_id, w.port as u16, w.proto) {
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
    let trie = if w.deny == 1 { &RF_DENY4 } else { &RF_ALLOW4 };
    step(w, trie, key4(w.table, w.addr))
}

extern "C" fn walk6_step(_index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the pointer to the caller's `Walk<16>`.
    let w = unsafe { &mut *(ctx as *mut Walk<16>) };
    let trie = if w.deny == 1 { &RF_DENY6 } else { &RF_ALLOW6 };
    step(w, trie, key6(w.table, w.addr))
}

/// State of a match-list search: one `bpf_loop` iteration per item, so the verifier checks one
/// item once per call site instead of unrolling all [`MAX_ITEMS`] (verification time and the
/// one-million-instruction budget are what this saves).
#[repr(C)]
struct Find {
    table: u32,
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
    // SAFETY: a value of the map, read in this callback only.
    let Some(list) = (unsafe { RF_LISTS.get(&ListKey { table: f.table, list: f.list_id }) }) else {
        return 1;
    };
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

/// (rule id, encryption required) of the first item of a table's list matching (port, proto).
#[inline(always)]
fn find_in(table: u32, list_id: u32, port: u16, proto: u32) -> Option<(u32, bool)> {
    if list_id == NO_LIST {
        return None;
    }
    let mut f = Find { table, list_id, port: port as u32, proto, rule: 0, encrypt: 0, found: 0, _pad: 0 };
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
fn walk<const N: usize>(table: u32, deny: bool, addr: [u8; N], port: u16, proto: u32) -> Option<(u32, bool)> {
    let mut w = Walk {
        addr,
        plen: (N * 8) as u32,
        port: port as u32,
        proto,
        table,
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

/// The geo entry of an address in a table (`N` = 4 or 16).
#[inline(always)]
fn geo_entry<const N: usize>(table: u32, addr: &[u8; N]) -> Option<&'static ringfence_common::GeoEntry> {
    let len = TABLE_BITS + (N * 8) as u32;
    if N == 4 {
        RF_GEO4.get(Key::new(len, key4(table, [addr[0], addr[1], addr[2], addr[3]])))
    } else {
        let mut k = [0u8; 20];
        k[..4].copy_from_slice(&table.to_be_bytes());
        k[4..].copy_from_slice(&addr[..]);
        RF_GEO6.get(Key::new(len, k))
    }
}

/// A destination in the form of the DNS maps' keys.
#[inline(always)]
fn dns_dest<const N: usize>(addr: &[u8; N], port: u16, proto: u32) -> DnsDest {
    let mut a = [0u8; 16];
    a[..N].copy_from_slice(addr);
    DnsDest { family: if N == 4 { 4 } else { 6 }, port: port as u32, proto, addr: a }
}

#[inline(always)]
fn rules<const N: usize>(a: &Active, addr: [u8; N], port: u16, proto: u32) -> Outcome {
    let (table, cfg) = (a.table, &a.cfg);
    let dns = cfg.flags & CONFIG_DNS != 0;
    if dns {
        match pinning(a, &dns_dest(&addr, port, proto)) {
            PIN_NONE => {}
            PIN_ALLOW => return outcome(false, RULE_DNS_RESOLVER, 0, false),
            _ => return outcome(true, RULE_DNS_PINNED, 0, false),
        }
    }
    if let Some((rule, _)) = walk(table, true, addr, port, proto) {
        return outcome(true, rule, 0, false);
    }
    if let Some((rule, encrypt)) = walk(table, false, addr, port, proto) {
        return outcome(false, rule, 0, encrypt);
    }
    if dns {
        let list = learned_list(a, &dns_dest(&addr, port, proto));
        if let Some((rule, encrypt)) = find_in(table, list, port, proto) {
            return outcome(false, rule, 0, encrypt);
        }
    }
    let default_deny = cfg.default_action != ACTION_ALLOW;
    match geo_entry(table, &addr) {
        Some(g) => {
            let (deny_list, allow_list, country) = (g.deny_list, g.allow_list, g.country);
            if let Some((rule, _)) = find_in(table, deny_list, port, proto) {
                outcome(true, rule, country, false)
            } else if let Some((rule, encrypt)) = find_in(table, allow_list, port, proto) {
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

/// A subprogram of its own (not inlined): its locals (the walks, keys, lists) get a frame of
/// their own instead of adding to every hook's, which must stay under the 512-byte stack.
#[inline(never)]
fn decide<const N: usize>(a: &Active, addr: [u8; N], port: u16, proto: u32) -> Verdict {
    let Outcome { deny, rule: rule_id, country, encrypt } = rules(a, addr, port, proto);
    let verdict = match (deny, a.cfg.mode == MODE_AUDIT) {
        (false, _) => VERDICT_ALLOW,
        (true, false) => VERDICT_DENY,
        (true, true) => VERDICT_AUDIT,
    };
    Verdict { verdict, rule_id, generation: a.cfg.generation, country, encrypt }
}

/// A verdict that is not the rules' (a refused socket, an undecidable source route): deny,
/// or audit-deny under an audit-mode policy.
#[inline(always)]
pub fn refusal(a: &Active, rule_id: u32) -> Verdict {
    let verdict = if a.cfg.mode == MODE_AUDIT { VERDICT_AUDIT } else { VERDICT_DENY };
    Verdict { verdict, rule_id, generation: a.cfg.generation, country: 0, encrypt: false }
}

/// Verdict for an IPv4 destination (address bytes in network order). ICMPv6 is decided as ICMP;
/// callers pass port 0 for ICMP (an echo identifier is no port: port entries never match ICMP).
#[inline(always)]
pub fn decide_v4(a: &Active, addr: [u8; 4], port: u16, proto: u32) -> Verdict {
    decide(a, addr, port, verdict_proto(proto))
}

/// Verdict for the destination of an IPv6 packet on the wire, where an IPv4-mapped address is
/// not routable and decided as the IPv6 address it is (one instance of the verdict code fewer
/// for the verifier than deciding it as IPv4).
#[inline(always)]
pub fn decide_wire_v6(a: &Active, addr: [u8; 16], port: u16, proto: u32) -> Verdict {
    decide(a, addr, port, verdict_proto(proto))
}
