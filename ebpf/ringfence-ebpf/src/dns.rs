//! Learning the addresses of allowed names from DNS answers, in `cgroup_skb/ingress` before the
//! answer reaches the workload's socket (so its first connect finds the address), and the
//! verdict's two DNS checks: resolver pinning and learned addresses.
//!
//! An answer is looked at only if it comes from port 53 of a resolver pinned by the receiving
//! workload's policy (`RF_DNSSRV`). The parser (`ringfence_common::dns`) runs one step per
//! `bpf_loop` iteration on a per-CPU copy of the message; each suffix of the question name is
//! looked up in `RF_NAMES` (the longest match wins), and only then is every A/AAAA of the
//! answer section written to `RF_LEARNED` with its deadline: now + max(TTL, the policy's floor).
use aya_ebpf::{
    cty::c_void,
    helpers::{bpf_ktime_get_ns, generated::bpf_loop, generated::bpf_skb_load_bytes},
    macros::map,
    maps::PerCpuArray,
    programs::SkBuffContext,
};
use ringfence_common::{
    table_parts, DnsParser, Learned, LearnedKey, NameKey, NameRule, ServerKey, CONFIG_DNS, DNS_BUF,
    MAX_DNS_STEPS, NAME_EXACT, NAME_SINK, NAME_WILDCARD, NO_LIST, PROTO_TCP, PROTO_UDP, SERVER_DOH,
    SERVER_RESOLVER, STAT_DNS_IGNORED, STAT_DNS_LEARNED, STAT_DNS_MATCHED, STAT_DNS_NEW, STEP_ANSWER,
    STEP_BAD, STEP_END, STEP_NAME_DONE, STEP_SUFFIX,
};

use crate::active::Active;
use crate::maps::{bump, RF_DNSSRV, RF_LEARNED, RF_NAMES};

const NS: u64 = 1_000_000_000;
const DNS_PORT: u16 = 53;
const DOT_PORT: u16 = 853;
const HTTPS_PORT: u16 = 443;

/// The parser and the message it parses (per CPU: far beyond the 512-byte stack).
#[repr(C)]
pub struct DnsScratch {
    pub parser: DnsParser,
    pub msg: [u8; DNS_BUF],
}

#[map]
static RF_DNS_SCRATCH: PerCpuArray<DnsScratch> = PerCpuArray::with_max_entries(1, 0);

/// What one answer's learning shares with the `bpf_loop` callback.
#[repr(C)]
struct Learning {
    hash: u64,
    now: u64,
    policy: u32,
    table: u32,
    floor: u32,
    matched: u32,
    kind: u32,
    _pad: u32,
}

#[inline(always)]
fn server(table: u32, family: u32, addr: &[u8; 16]) -> u32 {
    // SAFETY: a value of the map, copied at once.
    unsafe { RF_DNSSRV.get(&ServerKey { table, family, addr: *addr }) }.copied().unwrap_or(0)
}

extern "C" fn learn_step(_index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: bpf_loop passes back the pointer to the caller's `Learning`.
    let l = unsafe { &mut *(ctx as *mut Learning) };
    let Some(s) = RF_DNS_SCRATCH.get_ptr_mut(0) else { return 1 };
    // SAFETY: this CPU's scratch value; the program runs to completion on this CPU.
    let s = unsafe { &mut *s };
    match s.parser.step(&s.msg) {
        STEP_SUFFIX => {
            let kind = if s.parser.exact == 1 { NAME_EXACT } else { NAME_WILDCARD };
            let key = NameKey { table: l.table, kind, hash: s.parser.hash };
            // SAFETY: only the presence of the value is used.
            if unsafe { RF_NAMES.get(&key) }.is_some() {
                l.matched = 1;
                l.kind = kind;
                l.hash = key.hash;
            }
            0
        }
        STEP_NAME_DONE => {
            if l.matched == 0 {
                return 1;
            }
            bump(STAT_DNS_MATCHED);
            0
        }
        STEP_ANSWER => {
            let p = &s.parser;
            let key = LearnedKey { policy: l.policy, family: p.family, addr: p.addr };
            let ttl = if p.ttl > l.floor { p.ttl } else { l.floor };
            let mut expires_ns = l.now + ttl as u64 * NS;
            let old = RF_LEARNED.get_ptr(&key);
            if let Some(old) = old {
                // SAFETY: a value pointer of the map, read once.
                let old = unsafe { (*old).expires_ns };
                if old > expires_ns {
                    expires_ns = old;
                }
            }
            let value = Learned { expires_ns, name_hash: l.hash, kind: l.kind, ttl: p.ttl };
            if RF_LEARNED.insert(&key, &value, 0).is_ok() {
                bump(STAT_DNS_LEARNED);
                if old.is_none() {
                    bump(STAT_DNS_NEW);
                }
            }
            0
        }
        STEP_END | STEP_BAD => 1,
        _ => 0,
    }
}

/// Where a DNS message is in a packet to a workload: `len` bytes at `off` (a UDP payload, or a
/// TCP payload after its length prefix), sent by `src`.
#[repr(C)]
pub struct AnswerAt {
    pub family: u32,
    pub off: u32,
    pub len: u32,
    pub src: [u8; 16],
}

/// Learns the answer at `at` for the workload whose policy's active egress table is `a`. Not
/// inlined: its frame is its own.
#[inline(never)]
pub fn learn(ctx: &SkBuffContext, a: &Active, at: &AnswerAt) {
    if a.cfg.flags & CONFIG_DNS == 0 {
        return;
    }
    let (off, len) = (at.off, at.len);
    if server(a.table, at.family, &at.src) != SERVER_RESOLVER || len < 12 {
        bump(STAT_DNS_IGNORED);
        return;
    }
    let Some(s) = RF_DNS_SCRATCH.get_ptr_mut(0) else { return };
    let n = if len > DNS_BUF as u32 { DNS_BUF as u32 } else { len };
    // SAFETY: the program's own skb; `n` is between 12 and the size of the scratch buffer.
    let loaded = unsafe { bpf_skb_load_bytes(ctx.skb.skb.cast(), off, (*s).msg.as_mut_ptr().cast(), n) };
    if loaded != 0 {
        bump(STAT_DNS_IGNORED);
        return;
    }
    // SAFETY: this CPU's scratch value.
    unsafe { (*s).parser.start(n) };
    let mut l = Learning {
        hash: 0,
        // SAFETY: a helper without arguments.
        now: unsafe { bpf_ktime_get_ns() },
        policy: table_parts(a.table).0,
        table: a.table,
        floor: a.cfg.ttl_floor,
        matched: 0,
        kind: 0,
        _pad: 0,
    };
    // SAFETY: the callback matches bpf_loop's contract and only touches `l` through ctx.
    unsafe {
        bpf_loop(
            MAX_DNS_STEPS,
            learn_step as *const () as *mut c_void,
            &mut l as *mut Learning as *mut c_void,
            0,
        )
    };
}

/// A destination as the DNS checks see it (passed by reference: BPF calls take five
/// arguments at most).
#[repr(C)]
pub struct DnsDest {
    pub family: u32,
    pub port: u32,
    pub proto: u32,
    pub addr: [u8; 16],
}

/// [`pinning`] results.
pub const PIN_NONE: u32 = 0;
pub const PIN_ALLOW: u32 = 1;
pub const PIN_DENY: u32 = 2;

/// Resolver pinning for a policy that uses DNS: port 53 only to its resolvers (allowed as
/// `RULE_DNS_RESOLVER`), no DNS over TLS, no HTTPS to known DNS-over-HTTPS endpoints (refused
/// as `RULE_DNS_PINNED`). [`PIN_NONE`] when none of it applies.
#[inline(never)]
pub fn pinning(a: &Active, d: &DnsDest) -> u32 {
    if d.proto != PROTO_TCP && d.proto != PROTO_UDP {
        return PIN_NONE;
    }
    match d.port as u16 {
        DNS_PORT if server(a.table, d.family, &d.addr) == SERVER_RESOLVER => PIN_ALLOW,
        DNS_PORT | DOT_PORT => PIN_DENY,
        HTTPS_PORT if server(a.table, d.family, &d.addr) == SERVER_DOH => PIN_DENY,
        _ => PIN_NONE,
    }
}

/// The unexpired learned entry of `addr` for `policy`, with the time now.
#[inline(always)]
fn live(policy: u32, family: u32, addr: &[u8; 16]) -> Option<(*mut Learned, u64)> {
    let entry = RF_LEARNED.get_ptr_mut(&LearnedKey { policy, family, addr: *addr })?;
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    // SAFETY: a value pointer of the map; a racing update writes the same kind of value.
    (unsafe { (*entry).expires_ns } > now).then_some((entry, now))
}

/// A use of a learned address keeps it alive at least `floor` seconds more (a live flow keeps
/// its address).
#[inline(always)]
fn renew(entry: *mut Learned, now: u64, floor: u32) {
    let keep = now + floor as u64 * NS;
    // SAFETY: a value pointer of the map (see `live`).
    unsafe {
        if (*entry).expires_ns < keep {
            (*entry).expires_ns = keep;
        }
    }
}

/// The name rule that taught a learned entry, in `table`.
#[inline(always)]
fn taught_by(table: u32, entry: *mut Learned) -> Option<&'static NameRule> {
    // SAFETY: a value pointer of the map, read once.
    let (kind, hash) = unsafe { ((*entry).kind, (*entry).name_hash) };
    // SAFETY: a value of the map, only read.
    unsafe { RF_NAMES.get(&NameKey { table, kind, hash }) }
}

/// Renews `addr`'s learned entry for `table`'s policy by `floor` seconds if it has not expired
/// (a cached flow to it is alive; an expired entry stays expired).
#[inline(never)]
pub fn keep_learned(table: u32, family: u32, addr: &[u8; 16], floor: u32) {
    if let Some((entry, now)) = live(table_parts(table).0, family, addr) {
        renew(entry, now, floor);
    }
}

/// Whether `addr` is an unexpired address learned for a name that is an approved sink of
/// `table`'s policy; a use renews it by `floor` seconds, like [`learned_list`].
#[inline(never)]
pub fn learned_sink(table: u32, family: u32, addr: &[u8; 16], floor: u32) -> bool {
    let Some((entry, now)) = live(table_parts(table).0, family, addr) else { return false };
    let sink = taught_by(table, entry).is_some_and(|r| r.flags & NAME_SINK != 0);
    if sink {
        renew(entry, now, floor);
    }
    sink
}

/// The match list of the name that taught an unexpired learned address of the active table's
/// policy, or `NO_LIST`. A use moves the deadline to at least now + the floor (a live flow
/// keeps its address).
#[inline(never)]
pub fn learned_list(a: &Active, d: &DnsDest) -> u32 {
    let Some((entry, now)) = live(table_parts(a.table).0, d.family, &d.addr) else { return NO_LIST };
    let Some(list_id) = taught_by(a.table, entry).map(|r| r.list_id) else { return NO_LIST };
    renew(entry, now, a.cfg.ttl_floor);
    list_id
}
