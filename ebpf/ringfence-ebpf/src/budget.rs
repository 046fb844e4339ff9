//! Exfiltration budgets and the rate cap (see `ringfence_common::budget`), charged by
//! `rf_skb_budget` for every packet a workload sends to a destination that is not an approved sink,
//! and consulted by the connect hooks (a spent budget refuses the connection).
//!
//! Counting adds atomically before deciding: the packet whose bytes would cross a budget is
//! dropped and its bytes taken back, so what leaves never exceeds the budget (counted as IP
//! packet bytes, which is at least the payload the receiver gets). The crossing marks the
//! counter exhausted; the first CPU to mark it emits the one alert.
use core::intrinsics::{atomic_xadd, AtomicOrdering::Relaxed};

use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    maps::{lpm_trie::Key, HashMap, LruHashMap},
};
use ringfence_common::{
    key4, key6, BudgetConfig, BudgetCounter, BudgetKey, BudgetLimit, BUDGET_DEST, BUDGET_DNS,
    BUDGET_EXHAUSTED, BUDGET_ICMP, BUDGET_RATE, BUDGET_TOTAL, HOOK_SKB_EGRESS, RULE_BUDGET,
    STAT_BUDGET_DEST_NEW, STAT_BUDGET_DROPPED, STAT_BUDGET_UNTRACKED, STAT_RATE_DROPPED, VERDICT_BUDGET,
};

use crate::{
    dns::learned_sink,
    event::{emit_budget, Dest},
    flows::to_wireguard_peer_addr,
    iphdr::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP},
    maps::{
        bump, BudgetCrossing, RF_BUDGETALERT, RF_BUDGETCFG, RF_BUDGETCKPT, RF_BUDGETDST, RF_BUDGETWL,
        RF_SINK4, RF_SINK6,
    },
    verdict::Verdict,
};

/// What the budgets decide for one packet.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    Pass,
    /// A budget is spent.
    Drop,
    /// Over the rate cap: dropped with congestion notification (TCP backs off).
    Throttle,
    /// Into the rate cap's debt: let out with congestion notification.
    Slow,
}

/// One packet (or connection) as the budgets see it.
#[repr(C)]
pub struct Sent {
    pub daddr: [u8; 16],
    pub family: u32,
    pub proto: u32,
    /// Destination port (host order; 0 for ICMP).
    pub dport: u32,
    /// Bytes to charge: the IP packet's length (ICMP: its payload).
    pub len: u32,
    /// The sending socket's cgroup (for the alert) and its workload (what is counted).
    pub cgroup_id: u64,
    pub workload: u64,
    /// The sender's policy's active egress table and its generation (names the policy in the
    /// alert).
    pub table: u32,
    pub generation: u32,
}

/// The budget settings of `table` when any budget applies.
#[inline(always)]
fn config(table: u32) -> Option<&'static BudgetConfig> {
    RF_BUDGETCFG.get(table).filter(|c| c.enabled != 0)
}

/// Whether `table` has any budget or rate cap (one array read).
#[inline(always)]
pub fn budgets_configured(table: u32) -> bool {
    config(table).is_some()
}

/// Whether the destination is an approved sink of the table (a CIDR or country, a live address
/// learned for a sink name, or a WireGuard peer endpoint): never counted, never capped.
#[inline(always)]
fn approved(s: &Sent, cfg: &BudgetConfig) -> bool {
    let sink = if s.family == 4 {
        let a = s.daddr;
        RF_SINK4.get(Key::new(64, key4(s.table, [a[0], a[1], a[2], a[3]]))).is_some()
    } else {
        RF_SINK6.get(Key::new(160, key6(s.table, s.daddr))).is_some()
    };
    sink || (cfg.sink_names_floor != 0 && learned_sink(s.table, s.family, &s.daddr, cfg.sink_names_floor))
        || (s.proto == IPPROTO_UDP && to_wireguard_peer_addr(s.daddr, s.dport as u16, s.family))
}

/// The byte budget kind a packet is charged to besides the per-destination one: DNS (port 53)
/// and ICMP have their own; everything else counts towards the total.
#[inline(always)]
fn kind(s: &Sent) -> u32 {
    if (s.proto == IPPROTO_UDP || s.proto == IPPROTO_TCP) && s.dport == 53 {
        BUDGET_DNS
    } else if s.proto == IPPROTO_ICMP || s.proto == IPPROTO_ICMPV6 {
        BUDGET_ICMP
    } else {
        BUDGET_TOTAL
    }
}

#[inline(always)]
fn workload_key(workload: u64, kind: u32) -> BudgetKey {
    BudgetKey { workload, addr: [0; 16], family: 0, kind }
}

/// The counter of `key`, created when missing (`None`: it could not be: fail closed).
#[inline(always)]
fn counter<M: CounterMap>(map: &M, key: &BudgetKey, now: u64) -> Option<*mut BudgetCounter> {
    if let Some(c) = map.ptr(key) {
        return Some(c);
    }
    let fresh = BudgetCounter { bytes: 0, start_ns: now, flags: 0, dropped: 0 };
    map.create(key, &fresh);
    map.ptr(key)
}

/// The two counter maps: per workload (hash) and per destination (LRU).
trait CounterMap {
    fn ptr(&self, key: &BudgetKey) -> Option<*mut BudgetCounter>;
    fn create(&self, key: &BudgetKey, value: &BudgetCounter);
}

impl CounterMap for HashMap<BudgetKey, BudgetCounter> {
    #[inline(always)]
    fn ptr(&self, key: &BudgetKey) -> Option<*mut BudgetCounter> {
        self.get_ptr_mut(key)
    }
    #[inline(always)]
    fn create(&self, key: &BudgetKey, value: &BudgetCounter) {
        let _ = self.insert(key, value, aya_ebpf::bindings::BPF_NOEXIST as u64);
    }
}

impl CounterMap for LruHashMap<BudgetKey, BudgetCounter> {
    #[inline(always)]
    fn ptr(&self, key: &BudgetKey) -> Option<*mut BudgetCounter> {
        self.get_ptr_mut(key)
    }
    #[inline(always)]
    fn create(&self, key: &BudgetKey, value: &BudgetCounter) {
        if self.insert(key, value, aya_ebpf::bindings::BPF_NOEXIST as u64).is_ok() {
            bump(STAT_BUDGET_DEST_NEW);
        }
    }
}

/// The limit in bytes: absolute, or its share of the largest checkpoint seen.
#[inline(always)]
fn limit_bytes(l: &BudgetLimit) -> u64 {
    if l.ppm == 0 {
        return l.bytes;
    }
    let largest = RF_BUDGETCKPT.get(0).copied().unwrap_or(0);
    (largest / 1_000_000) * l.ppm as u64 + (largest % 1_000_000) * l.ppm as u64 / 1_000_000
}

/// Starts a new window when the counter's is over.
#[inline(always)]
fn roll(c: &mut BudgetCounter, window_ns: u64, now: u64) {
    if now.wrapping_sub(c.start_ns) >= window_ns {
        c.start_ns = now;
        c.bytes = 0;
        c.flags = 0;
        c.dropped = 0;
    }
}

/// Charges `len` bytes to one counter. False when the budget is spent (the bytes are not
/// counted); the first crossing in a window alerts.
#[inline(always)]
fn charge_one(c: *mut BudgetCounter, key: &BudgetKey, l: &BudgetLimit, s: &Sent, now: u64) -> bool {
    let kind = key.kind;
    // SAFETY: a value pointer of a counter map, live for this program run.
    let cr = unsafe { &mut *c };
    roll(cr, l.window_ns, now);
    if cr.flags & BUDGET_EXHAUSTED != 0 {
        cr.dropped = cr.dropped.wrapping_add(1);
        return false;
    }
    let len = s.len as u64;
    // Add first, then read: the read includes every byte let out before it, so the bytes let
    // out never exceed the limit (racing CPUs may both refuse: conservative). BPF's atomic add
    // without fetch (the programs are built for BPF CPU v1, which has no fetch).
    // SAFETY: `bytes` is an aligned u64 inside the map value; every CPU changes it atomically.
    unsafe { atomic_xadd::<u64, u64, { Relaxed }>(&mut cr.bytes, len) };
    // SAFETY: as above; a volatile read so the compiler does not reuse an earlier value.
    let after = unsafe { core::ptr::read_volatile(&cr.bytes) };
    if after <= limit_bytes(l) {
        return true;
    }
    // SAFETY: as above (adding the two's complement takes the bytes back).
    unsafe { atomic_xadd::<u64, u64, { Relaxed }>(&mut cr.bytes, len.wrapping_neg()) };
    cr.flags |= BUDGET_EXHAUSTED;
    if first_crossing(key, cr.start_ns) {
        alert(s, kind);
    }
    false
}

/// True for exactly one caller per counter and window: an insert that fails when the entry
/// exists is the kernel's test-and-set.
#[inline(always)]
fn first_crossing(key: &BudgetKey, start_ns: u64) -> bool {
    let crossing = BudgetCrossing { key: *key, start_ns };
    RF_BUDGETALERT.insert(&crossing, &start_ns, aya_ebpf::bindings::BPF_NOEXIST as u64).is_ok()
}

/// The one ring-buffer event of a crossing (the event's port holds the budget kind).
#[inline(never)]
fn alert(s: &Sent, kind: u32) {
    let dest = Dest {
        daddr: s.daddr,
        family: s.family,
        port: kind as u16,
        protocol: s.proto,
        hook: HOOK_SKB_EGRESS,
    };
    let v = Verdict {
        verdict: VERDICT_BUDGET,
        rule_id: RULE_BUDGET,
        generation: s.generation,
        country: 0,
        encrypt: false,
    };
    emit_budget(&dest, &v, s.cgroup_id);
}

/// The rate cap's token bucket: refilled at the rate, at most `burst` deep, and allowed to go
/// up to `burst` into debt with congestion notification (TCP halves its window and slows down
/// before anything is dropped, like the kernel's host bandwidth manager sample). Beyond the debt
/// the packet is dropped (with notification). Any second therefore lets out at most the rate plus
/// twice the burst (1/40 s of the rate each: 1.05x).
#[inline(always)]
fn take_tokens(cfg: &BudgetConfig, s: &Sent, now: u64) -> Charge {
    let Some(c) = counter(&RF_BUDGETWL, &workload_key(s.workload, BUDGET_RATE), now) else {
        bump(STAT_BUDGET_UNTRACKED);
        return Charge::Drop;
    };
    // SAFETY: a value pointer of the workload map.
    let b = unsafe { &mut *c };
    let burst = cfg.rate_burst as i64;
    // At most 4 s of refill, in microseconds, so the product fits 64 bits for any rate.
    let elapsed_us = now.wrapping_sub(b.start_ns).min(4_000_000_000) / 1_000;
    let refill = (elapsed_us * cfg.rate_bytes_per_sec / 1_000_000) as i64;
    // The tokens, signed (a debt is negative), stored as two's complement.
    let mut tokens = b.bytes as i64;
    if refill > 0 {
        tokens = (tokens + refill).min(burst);
        b.start_ns = now;
    }
    let after = tokens - s.len as i64;
    if after < -burst {
        b.bytes = tokens as u64;
        b.dropped = b.dropped.wrapping_add(1);
        return Charge::Throttle;
    }
    b.bytes = after as u64;
    if after < 0 {
        Charge::Slow
    } else {
        Charge::Pass
    }
}

/// Charges one outgoing packet of a workload to its budgets and rate cap.
#[inline(never)]
pub fn charge(s: &Sent) -> Charge {
    let Some(cfg) = config(s.table) else { return Charge::Pass };
    if approved(s, cfg) {
        return Charge::Pass;
    }
    // SAFETY: no arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let kind = kind(s);
    let mut ok = true;
    let l = &cfg.limits[BUDGET_DEST as usize];
    if l.enabled != 0 && kind == BUDGET_TOTAL {
        let key = BudgetKey { workload: s.workload, addr: s.daddr, family: s.family, kind: BUDGET_DEST };
        ok = match counter(&RF_BUDGETDST, &key, now) {
            Some(c) => charge_one(c, &key, l, s, now),
            None => untracked(),
        };
    }
    let l = &cfg.limits[kind as usize & 3];
    if ok && l.enabled != 0 {
        let key = workload_key(s.workload, kind);
        ok = match counter(&RF_BUDGETWL, &key, now) {
            Some(c) => charge_one(c, &key, l, s, now),
            None => untracked(),
        };
    }
    if !ok {
        bump(STAT_BUDGET_DROPPED);
        return Charge::Drop;
    }
    if cfg.rate_bytes_per_sec == 0 {
        return Charge::Pass;
    }
    let c = take_tokens(cfg, s, now);
    if c == Charge::Throttle {
        bump(STAT_RATE_DROPPED);
    }
    c
}

/// A workload's budget state could not be created: the packet is refused.
#[inline(always)]
fn untracked() -> bool {
    bump(STAT_BUDGET_UNTRACKED);
    false
}

/// Whether a budget the destination is charged to is spent in its current window (the connect
/// hooks refuse the connection then).
#[inline(never)]
pub fn spent(s: &Sent) -> bool {
    let Some(cfg) = config(s.table) else { return false };
    if approved(s, cfg) {
        return false;
    }
    // SAFETY: no arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let kind = kind(s);
    let over = |c: Option<*mut BudgetCounter>, l: &BudgetLimit| match c {
        // SAFETY: a value pointer of a counter map, read once.
        Some(c) => unsafe {
            l.enabled != 0
                && (*c).flags & BUDGET_EXHAUSTED != 0
                && now.wrapping_sub((*c).start_ns) < l.window_ns
        },
        None => false,
    };
    let key = BudgetKey { workload: s.workload, addr: s.daddr, family: s.family, kind: BUDGET_DEST };
    (kind == BUDGET_TOTAL && over(RF_BUDGETDST.get_ptr_mut(&key), &cfg.limits[BUDGET_DEST as usize]))
        || over(RF_BUDGETWL.get_ptr_mut(&workload_key(s.workload, kind)), &cfg.limits[kind as usize & 3])
}
