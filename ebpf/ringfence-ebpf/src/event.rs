//! Verdict events to userspace. A full ring buffer never blocks or changes a verdict: the event is
//! dropped and counted in `STAT_EVENTS_DROPPED`.
//!
//! Submitting does not wake the agent for every event (a wakeup per connect() would cost more
//! than the verdict): the agent drains the buffer on a short timer, and the program forces a
//! wakeup only once a backlog of `WAKEUP_BYTES` has built up.
use aya_ebpf::bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP};
use aya_ebpf::helpers::{
    bpf_get_current_cgroup_id, bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns,
};
use ringfence_common::{Event, EVENTS_WAKEUP_BYTES, HOOK_TC_EGRESS, STAT_EVENTS_DROPPED};

use crate::{
    maps::{bump, RF_EVENTS},
    verdict::Verdict,
};

/// Where a connection was going.
pub struct Dest {
    pub daddr: [u8; 16],
    pub family: u32,
    pub port: u16,
    pub protocol: u32,
    pub hook: u32,
}

#[inline(always)]
pub fn emit(dest: &Dest, v: &Verdict) {
    let Some(mut entry) = RF_EVENTS.reserve::<Event>(0) else {
        bump(STAT_EVENTS_DROPPED);
        return;
    };
    let pid_tgid = bpf_get_current_pid_tgid();
    entry.write(Event {
        ts_ns: unsafe { bpf_ktime_get_ns() },
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        pid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
        daddr: dest.daddr,
        family: dest.family,
        dport: dest.port as u32,
        protocol: dest.protocol,
        verdict: v.verdict,
        rule_id: v.rule_id,
        hook: dest.hook,
        generation: v.generation,
        country: v.country,
    });
    let backlog = RF_EVENTS.query(BPF_RB_AVAIL_DATA as u64);
    let flags = if backlog >= EVENTS_WAKEUP_BYTES as u64 { BPF_RB_FORCE_WAKEUP } else { BPF_RB_NO_WAKEUP };
    entry.submit(flags as u64);
}

/// A packet-path event (no process context in tc: pid and comm stay empty; the cgroup is the
/// sending socket's, 0 without one).
#[inline(always)]
pub fn emit_packet(p: &crate::packet::Packet, cgroup_id: u64, verdict: u32) {
    let Some(mut entry) = RF_EVENTS.reserve::<Event>(0) else {
        bump(STAT_EVENTS_DROPPED);
        return;
    };
    entry.write(Event {
        ts_ns: unsafe { bpf_ktime_get_ns() },
        cgroup_id,
        pid: 0,
        tid: 0,
        comm: [0; 16],
        daddr: p.dst,
        family: p.family,
        dport: p.dport as u32,
        protocol: p.proto,
        verdict,
        rule_id: 0,
        hook: HOOK_TC_EGRESS,
        generation: 0,
        country: 0,
    });
    // Rare (one per flow): wake the agent at once.
    entry.submit(BPF_RB_FORCE_WAKEUP as u64);
}
