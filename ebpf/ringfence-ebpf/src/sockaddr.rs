//! Reading the destination out of a `bpf_sock_addr` context and deciding on it.
use aya_ebpf::{helpers::bpf_get_current_cgroup_id, programs::SockAddrContext};
use ringfence_common::{SkVerdict, SK_ALLOWED, VERDICT_ALLOW};

use crate::{
    block::{block_verdict, blocked},
    event::{emit, remember_owner, Dest},
    maps::RF_SKCACHE,
    verdict::{decide_v4, decide_v6, ipv4_mapped, Verdict},
};

/// An exfiltration block on (this cgroup, destination) refuses the call before the policy is
/// consulted; returns the program's return value then.
#[inline(always)]
fn refuse_blocked(dest: &Dest) -> Option<i32> {
    if !blocked(unsafe { bpf_get_current_cgroup_id() }, dest.daddr, dest.family) {
        return None;
    }
    let v = block_verdict();
    v.count();
    emit(dest, &v);
    Some(v.retval())
}

/// Reports the verdict; an allowed destination is remembered with its process (attribution)
/// and on the socket, so the backstop passes its packets without deciding again.
#[inline(always)]
fn finish(ctx: &SockAddrContext, dest: &Dest, v: &Verdict) -> i32 {
    v.count();
    emit(dest, v);
    if v.verdict == VERDICT_ALLOW {
        remember_owner(dest);
        cache(ctx, dest, v.generation);
    }
    v.retval()
}

/// Notes on the socket that `dest` is allowed under `generation`.
#[inline(always)]
fn cache(ctx: &SockAddrContext, dest: &Dest, generation: u32) {
    let mut fresh = SkVerdict::default();
    // SAFETY: the context's socket pointer, as the helper expects.
    let p = unsafe { RF_SKCACHE.get_or_insert_ptr_mut(ctx, Some(&mut fresh)) };
    if p.is_null() {
        return;
    }
    // SAFETY: non-null socket storage of this socket.
    let c = unsafe { &mut *p };
    c.flags |= SK_ALLOWED;
    c.generation = generation;
    c.daddr = dest.daddr;
    c.family = dest.family;
    c.dport = dest.port;
    c.proto = dest.protocol as u16;
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
    if let Some(ret) = refuse_blocked(&dest) {
        return ret;
    }
    finish(ctx, &dest, &decide_v4(ip, port, protocol))
}

/// Decides an IPv6 `connect()`/`sendmsg()` (IPv4-mapped destinations are decided as IPv4).
#[inline(always)]
pub fn handle_v6(ctx: &SockAddrContext, hook: u32) -> i32 {
    let sa = unsafe { &*ctx.sock_addr };
    let mut ip = [0u8; 16];
    ip[0..4].copy_from_slice(&sa.user_ip6[0].to_ne_bytes());
    ip[4..8].copy_from_slice(&sa.user_ip6[1].to_ne_bytes());
    ip[8..12].copy_from_slice(&sa.user_ip6[2].to_ne_bytes());
    ip[12..16].copy_from_slice(&sa.user_ip6[3].to_ne_bytes());
    let protocol = sa.protocol;
    let port = u16::from_be(sa.user_port as u16);
    let (daddr, family) = match ipv4_mapped(&ip) {
        Some(v4) => {
            let mut d = [0u8; 16];
            d[..4].copy_from_slice(&v4);
            (d, 4)
        }
        None => (ip, 6),
    };
    let dest = Dest { daddr, family, port, protocol, hook };
    if let Some(ret) = refuse_blocked(&dest) {
        return ret;
    }
    finish(ctx, &dest, &decide_v6(ip, port, protocol).0)
}
