//! Reading the destination out of a `bpf_sock_addr` context and deciding on it.
use aya_ebpf::{helpers::bpf_get_current_cgroup_id, programs::SockAddrContext};
use ringfence_common::{CONFIG_DNS, STAT_ALLOWED, VERDICT_ALLOW};

use crate::{
    allowed,
    block::{block_verdict, blocked},
    budget::{budgets_configured, spent, Sent},
    event::{emit, owner_unchanged, remember_owner, Dest},
    iphdr::addr_bytes,
    maps::bump,
    verdict::{active, decide_v4, decide_wire_v6, Active, Verdict},
    workload::{policy_of_current, workload_of_current},
};

/// An exfiltration block on (this cgroup, destination), or a spent budget of its workload,
/// refuses the call before the policy is consulted; returns the program's return value then.
/// Not inlined, like [`finish`].
#[inline(never)]
fn refuse_blocked(a: &Active, dest: &Dest) -> Option<i32> {
    // SAFETY: no arguments.
    let cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    if !blocked(cgroup_id, dest.daddr, dest.family) && !budget_spent(a, dest, cgroup_id) {
        return None;
    }
    let v = block_verdict(a);
    v.count();
    emit(dest, &v);
    Some(v.retval())
}

/// Whether a budget of the calling workload that `dest` is charged to is spent.
#[inline(always)]
fn budget_spent(a: &Active, dest: &Dest, cgroup_id: u64) -> bool {
    if !budgets_configured(a.table) {
        return false;
    }
    let sent = Sent {
        daddr: dest.daddr,
        family: dest.family,
        proto: dest.protocol,
        dport: dest.port as u32,
        len: 0,
        cgroup_id,
        workload: workload_of_current(),
        table: a.table,
        generation: a.cfg.generation,
    };
    spent(&sent)
}

/// The connect-time verdict cache: a destination the active table allowed before (noted in
/// `RF_ALLOWED` under the table's generation) is allowed again without the trie walks, when
/// nothing else would differ: the table has no DNS rules (learned addresses expire, and an
/// expired one must be decided again; resolver pinning) and no allow event is due (an event
/// carries the deciding rule, which only the full verdict knows). Blocks and spent budgets are
/// checked before this. Counted as an allow, like the verdict it repeats. Not inlined, like
/// [`finish`].
#[inline(never)]
fn allowed_before(a: &Active, dest: &Dest) -> bool {
    if a.cfg.flags & CONFIG_DNS != 0
        || !allowed::covers(a, &allowed::key(a, dest.family, dest.protocol, dest.port, dest.daddr))
        || !owner_unchanged(dest)
    {
        return false;
    }
    bump(STAT_ALLOWED);
    true
}

/// Reports the verdict; an allowed destination is remembered with its process (attribution)
/// and in the backstop's verdict cache, so the backstop passes its packets without deciding
/// again. Not inlined: its frame (event, owner, cache key) is not on the stack while the verdict
/// runs.
#[inline(never)]
fn finish(a: &Active, dest: &Dest, v: &Verdict) -> i32 {
    v.count();
    if v.verdict != VERDICT_ALLOW {
        emit(dest, v);
    } else {
        if remember_owner(dest) {
            emit(dest, v);
        }
        allowed::note(a, &allowed::key(a, dest.family, dest.protocol, dest.port, dest.daddr));
    }
    v.retval()
}

/// Decides an IPv4 `connect()`/`sendmsg()`; returns the program's return value.
#[inline(always)]
pub fn handle_v4(ctx: &SockAddrContext, hook: u32) -> i32 {
    let sa = unsafe { &*ctx.sock_addr };
    let ip = sa.user_ip4.to_ne_bytes();
    let protocol = sa.protocol;
    // The port as given, ICMP included (no verdict_port here: one more branch doubles these
    // programs' verification). A ping socket's connect() is then decided with whatever the
    // caller put in sin_port; its packets are decided by the backstop with no port.
    let port = u16::from_be(sa.user_port as u16);
    let mut daddr = [0u8; 16];
    daddr[..4].copy_from_slice(&ip);
    let dest = Dest { daddr, family: 4, port, protocol, hook };
    let a = active(policy_of_current());
    if let Some(ret) = refuse_blocked(&a, &dest) {
        return ret;
    }
    if allowed_before(&a, &dest) {
        return 1;
    }
    finish(&a, &dest, &decide_v4(&a, ip, port, protocol))
}

/// Decides an IPv6 `connect()`/`sendmsg()` (IPv4-mapped destinations are decided as IPv4).
/// The address stays in 32-bit words until it is needed as bytes: split into bytes early, it
/// costs the program a spill slot per byte, and the stack is what limits these programs.
#[inline(always)]
pub fn handle_v6(ctx: &SockAddrContext, hook: u32) -> i32 {
    let sa = unsafe { &*ctx.sock_addr };
    let w = [sa.user_ip6[0], sa.user_ip6[1], sa.user_ip6[2], sa.user_ip6[3]];
    let mapped = w[0] == 0 && w[1] == 0 && w[2] == u32::from_ne_bytes([0, 0, 0xff, 0xff]);
    let protocol = sa.protocol;
    let port = u16::from_be(sa.user_port as u16);
    let a = active(policy_of_current());
    if mapped {
        let v4 = w[3].to_ne_bytes();
        let mut daddr = [0u8; 16];
        daddr[..4].copy_from_slice(&v4);
        let dest = Dest { daddr, family: 4, port, protocol, hook };
        if let Some(ret) = refuse_blocked(&a, &dest) {
            return ret;
        }
        if allowed_before(&a, &dest) {
            return 1;
        }
        return finish(&a, &dest, &decide_v4(&a, v4, port, protocol));
    }
    let daddr = addr_bytes(w);
    let dest = Dest { daddr, family: 6, port, protocol, hook };
    if let Some(ret) = refuse_blocked(&a, &dest) {
        return ret;
    }
    if allowed_before(&a, &dest) {
        return 1;
    }
    finish(&a, &dest, &decide_wire_v6(&a, daddr, port, protocol))
}
