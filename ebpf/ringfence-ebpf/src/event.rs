//! Verdict events to userspace. A full ring buffer never blocks or changes a verdict: the event is
//! dropped and counted in `STAT_EVENTS_DROPPED`.
//!
//! Submitting does not wake the agent for every event (a wakeup per connect() would cost more
//! than the verdict): the agent drains the buffer on a short timer, and the program forces a
//! wakeup only once a backlog of `WAKEUP_BYTES` has built up. Packet-level drops are reported at
//! most once per flow per `DROP_EVENT_INTERVAL_NS`.
use aya_ebpf::bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP};
use aya_ebpf::helpers::{
    bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns,
};
use ringfence_common::{
    DestKey, Event, FlowKey, Owner, ALLOW_EVENT_INTERVAL_NS, DROP_EVENT_INTERVAL_NS, EVENTS_WAKEUP_BYTES,
    STAT_EVENTS_DROPPED,
};

use crate::{
    maps::{bump, RF_DROPLOG, RF_EVENTS, RF_OWNERS},
    verdict::Verdict,
};

/// Where a connection or packet was going.
pub struct Dest {
    pub daddr: [u8; 16],
    pub family: u32,
    pub port: u16,
    pub protocol: u32,
    pub hook: u32,
}

/// Who sent it.
struct Sender {
    cgroup_id: u64,
    pid: u32,
    tid: u32,
    comm: [u8; 16],
}

#[inline(always)]
fn current() -> Sender {
    let pid_tgid = bpf_get_current_pid_tgid();
    Sender {
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        pid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    }
}

/// Reserves an event, lets `fill` write it in place (no copy on the small BPF stack) and
/// submits it.
#[inline(always)]
fn submit(force_wakeup: bool, fill: impl FnOnce(&mut Event)) {
    let Some(mut entry) = RF_EVENTS.reserve::<Event>(0) else {
        bump(STAT_EVENTS_DROPPED);
        return;
    };
    // SAFETY: the reservation is an Event-sized, writable slot; every field is written below.
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill(ev);
    let flags = if force_wakeup || RF_EVENTS.query(BPF_RB_AVAIL_DATA as u64) >= EVENTS_WAKEUP_BYTES as u64 {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    };
    entry.submit(flags as u64);
}

#[inline(always)]
fn fill(ev: &mut Event, dest: &Dest, v: &Verdict, who: &Sender) {
    ev.ts_ns = unsafe { bpf_ktime_get_ns() };
    ev.cgroup_id = who.cgroup_id;
    ev.pid = who.pid;
    ev.tid = who.tid;
    ev.comm = who.comm;
    ev.daddr = dest.daddr;
    ev.family = dest.family;
    ev.dport = dest.port as u32;
    ev.protocol = dest.protocol;
    ev.verdict = v.verdict;
    ev.rule_id = v.rule_id;
    ev.hook = dest.hook;
    ev.generation = v.generation;
    ev.country = v.country;
    ev.sock_family = 0;
    ev.sock_type = 0;
    ev.sock_level = 0;
    ev.sock_opt = 0;
}

/// A connect/sendmsg verdict, in the calling process's context.
#[inline(always)]
pub fn emit(dest: &Dest, v: &Verdict) {
    let who = current();
    submit(false, |ev| fill(ev, dest, v, &who));
}

/// The owner key of a destination.
#[inline(always)]
pub fn dest_key(cgroup_id: u64, daddr: [u8; 16], family: u32) -> DestKey {
    DestKey { cgroup_id, addr: daddr, family, _pad: 0 }
}

/// Remembers the calling process as the one that last reached `dest` from its cgroup.
#[inline(always)]
/// Returns whether the allowed connection is worth an event: a new (process, port) for the
/// destination, or the same one not reported for [`ALLOW_EVENT_INTERVAL_NS`] (a process
/// connecting in a loop is reported once per interval; every connection is counted).
pub fn remember_owner(dest: &Dest) -> bool {
    let who = current();
    let key = dest_key(who.cgroup_id, dest.daddr, dest.family);
    let now = unsafe { bpf_ktime_get_ns() };
    if let Some(o) = RF_OWNERS.get_ptr_mut(&key) {
        // SAFETY: a value pointer from the map.
        let o = unsafe { &mut *o };
        if o.pid == who.pid && o.port == dest.port as u32 {
            if recent(o, now) {
                return false; // unchanged and reported recently: no write, no event
            }
            o.ts_ns = now;
            return true;
        }
    }
    let owner = Owner { pid: who.pid, port: dest.port as u32, comm: who.comm, ts_ns: now };
    let _ = RF_OWNERS.insert(&key, &owner, 0);
    true
}

/// Whether the owner entry's last allow event is within [`ALLOW_EVENT_INTERVAL_NS`] of `now`.
#[inline(always)]
fn recent(o: &Owner, now: u64) -> bool {
    now.wrapping_sub(o.ts_ns) < ALLOW_EVENT_INTERVAL_NS
}

/// Whether [`remember_owner`] would return false for `dest` (no event due: the calling process
/// reached it on the same port recently), without writing anything or reading the task's name.
#[inline(always)]
pub fn owner_unchanged(dest: &Dest) -> bool {
    // SAFETY: helpers without arguments to check.
    let (cgroup_id, pid) =
        unsafe { (bpf_get_current_cgroup_id(), (bpf_get_current_pid_tgid() >> 32) as u32) };
    let Some(o) = RF_OWNERS.get_ptr(&dest_key(cgroup_id, dest.daddr, dest.family)) else { return false };
    // SAFETY: a value pointer from the map, read once.
    let o = unsafe { &*o };
    // SAFETY: a helper without arguments.
    o.pid == pid && o.port == dest.port as u32 && recent(o, unsafe { bpf_ktime_get_ns() })
}

/// True at most once per flow per [`DROP_EVENT_INTERVAL_NS`].
#[inline(always)]
fn due(key: &FlowKey) -> bool {
    let now = unsafe { bpf_ktime_get_ns() };
    if let Some(last) = RF_DROPLOG.get_ptr_mut(key) {
        // SAFETY: a value pointer from the map.
        let last = unsafe { &mut *last };
        if now.wrapping_sub(*last) < DROP_EVENT_INTERVAL_NS {
            return false;
        }
        *last = now;
        return true;
    }
    let _ = RF_DROPLOG.insert(key, &now, 0);
    true
}

/// A packet-level verdict (drop, plaintext drop, audit), rate limited per flow. The process is
/// the current task when `in_process` (the sending task's own context), else the last process
/// of the cgroup that reached the destination (connect hooks), else none.
#[inline(always)]
pub fn emit_packet(dest: &Dest, v: &Verdict, cgroup_id: u64, flow: &FlowKey, in_process: bool) {
    if !due(flow) {
        return;
    }
    let who = if in_process { current() } else { owner(cgroup_id, dest) };
    // Rare (rate limited): wake the agent at once.
    submit(true, |ev| {
        fill(ev, dest, v, &who);
        ev.cgroup_id = cgroup_id;
    });
}

/// The last process of the cgroup that reached the destination (connect hooks), else none.
#[inline(always)]
fn owner(cgroup_id: u64, dest: &Dest) -> Sender {
    let mut who = Sender { cgroup_id, pid: 0, tid: 0, comm: [0; 16] };
    if let Some(o) = RF_OWNERS.get_ptr(&dest_key(cgroup_id, dest.daddr, dest.family)) {
        // SAFETY: a value pointer from the map, read once.
        let o = unsafe { &*o };
        (who.pid, who.comm) = (o.pid, o.comm);
    }
    who
}

/// A budget crossing (once per budget and window, so not rate limited): wakes the agent at once.
#[inline(always)]
pub fn emit_budget(dest: &Dest, v: &Verdict, cgroup_id: u64) {
    let who = owner(cgroup_id, dest);
    submit(true, |ev| {
        fill(ev, dest, v, &who);
        ev.cgroup_id = cgroup_id;
    });
}

/// A refused socket or socket option (no destination), in the calling process's context.
pub struct SocketEvent {
    pub family: u32,
    pub ty: u32,
    pub protocol: u32,
    /// Socket option level and name (0 for socket creation).
    pub level: u32,
    pub opt: u32,
    pub hook: u32,
}

#[inline(always)]
pub fn emit_socket(s: &SocketEvent, v: &Verdict) {
    let dest = Dest { daddr: [0; 16], family: 0, port: 0, protocol: s.protocol, hook: s.hook };
    let who = current();
    submit(true, |ev| {
        fill(ev, &dest, v, &who);
        (ev.sock_family, ev.sock_type, ev.sock_level, ev.sock_opt) = (s.family, s.ty, s.level, s.opt);
    });
}
