//! `cgroup_skb/egress`: the enforced cgroup's own packet backstop. The connect/sendmsg hooks
//! decide what a socket asks for; this decides every packet the cgroup's sockets send (raw and
//! ping sockets included), on the packet's real destination and on every hop of a source route.
//!
//! Fast path (every packet to a destination the policy allowed recently): an exfiltration block
//! check, then either the remote side opened the connection (a listener's SYN-ACK, an accepted
//! connection: `crate::passive`) or the policy table's verdict cache (`crate::allowed`)
//! covers the packet's destination. Otherwise
//! the header walk (`rf_skb_parse`, for options and extension headers) and the verdict
//! (`rf_skb_verdict`, one address per call) run as tail calls with fresh verifier budgets. What
//! passes goes through the exfiltration budgets ([`let_out`]). A failed tail call drops the
//! packet: the backstop fails closed.
use aya_ebpf::{
    bindings::bpf_sock,
    helpers::generated::{bpf_sk_fullsock, bpf_skb_cgroup_id},
    macros::cgroup_skb,
    programs::SkBuffContext,
};
use ringfence_common::{
    FlowKey, DIR_EGRESS, SKB_TAIL_BUDGET, SKB_TAIL_PARSE, SKB_TAIL_VERDICT4, SKB_TAIL_VERDICT6,
    STAT_EXFIL_BLOCKED,
};

use crate::{
    active::active_table,
    allowed,
    block::blocked,
    budget::budgets_configured,
    handoff,
    iphdr::{addr_bytes, is_v6_ext, peek, tcp_udp, transport, verdict_port, IPPROTO_TCP, IPPROTO_UDP},
    maps::{bump, SkbScratch, RF_REPLIES, RF_SKB_SCRATCH, RF_SKB_TAILS},
    passive::opened_by_peer,
    verdict::active,
    workload::policy_of_skb,
};

/// cgroup_skb return values.
pub const PASS: i32 = 1;
pub const DROP: i32 = 0;
pub const BPF_TCP_LISTEN: u32 = 10;

#[cgroup_skb(egress)]
pub fn rf_skb_egress(ctx: SkBuffContext) -> i32 {
    // Unparseable IP headers are not let out.
    try_skb_egress(&ctx).unwrap_or(DROP)
}

/// The sending socket, as a full socket (`None` for request and time-wait sockets).
#[inline(always)]
pub fn full_socket(ctx: &SkBuffContext) -> Option<*mut bpf_sock> {
    // SAFETY: reading the context's socket pointer; the helper accepts it (null checked).
    unsafe {
        let sk = (*ctx.skb.skb).__bindgen_anon_2.sk;
        if sk.is_null() {
            return None;
        }
        let full = bpf_sk_fullsock(sk.cast()) as *mut bpf_sock;
        (!full.is_null()).then_some(full)
    }
}

/// The packet as the fast path sees it: the scratch record without its source-route entries,
/// which only the tail calls use (zeroing all of them on the stack cost the fast path nine
/// `memset` calls per packet).
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct Head {
    daddr: [u8; 16],
    saddr: [u8; 16],
    family: u32,
    proto: u32,
    sport: u16,
    dport: u16,
    l4_off: u32,
    next_hdr: u32,
    cgroup_id: u64,
    policy: u32,
    simple: u32,
}

#[inline(always)]
fn blank(cgroup_id: u64) -> Head {
    Head {
        daddr: [0; 16],
        saddr: [0; 16],
        family: 0,
        proto: 0,
        sport: 0,
        dport: 0,
        l4_off: 0,
        next_hdr: 0,
        cgroup_id,
        policy: 0,
        simple: 1,
    }
}

/// Hands the packet to the tail calls: this CPU's scratch record, claimed for it
/// (`crate::handoff`), every field they read before writing (route entries past `count` are
/// written before they are read).
#[inline(always)]
fn hand_off(ctx: &SkBuffContext, s: &mut SkbScratch, h: &Head) {
    handoff::claim(ctx, s, h.proto, h.sport, h.dport);
    s.addrs[0] = h.daddr;
    s.saddr = h.saddr;
    s.count = 1;
    s.family = h.family;
    s.l4_off = h.l4_off;
    s.next_hdr = h.next_hdr;
    s.cgroup_id = h.cgroup_id;
    s.policy = h.policy;
    s.simple = h.simple;
    s._pad = 0;
}

/// Reads the fixed IP header (and, when it is simple, the ports), in place when the linear data
/// holds it. Word reads: byte-wise copies of the addresses cost the fast path more than its
/// lookups.
#[inline(always)]
fn header(ctx: &SkBuffContext, s: &mut Head) -> Option<()> {
    // One read covers the fixed IPv4 header and tells the version (an IPv6 header is longer).
    let w: [u32; 5] = peek(ctx, 0)?;
    let (first, frag, proto) = (w[0].to_ne_bytes()[0], w[1].to_ne_bytes(), w[2].to_ne_bytes()[1]);
    match first >> 4 {
        4 => {
            let ihl = ((first & 0x0f) as usize) * 4;
            s.family = 4;
            s.proto = proto as u32;
            s.saddr = addr_bytes([w[3], 0, 0, 0]);
            s.daddr = addr_bytes([w[4], 0, 0, 0]);
            s.l4_off = ihl as u32;
            s.simple = (ihl == 20) as u32;
            if u16::from_be_bytes([frag[2], frag[3]]) & 0x1fff == 0 {
                ports(ctx, s, ihl)?;
            }
        }
        6 => {
            let w: [u32; 10] = peek(ctx, 0)?;
            s.family = 6;
            s.saddr = addr_bytes([w[2], w[3], w[4], w[5]]);
            s.daddr = addr_bytes([w[6], w[7], w[8], w[9]]);
            s.next_hdr = w[1].to_ne_bytes()[2] as u32;
            s.l4_off = 40;
            if is_v6_ext(s.next_hdr) {
                s.simple = 0;
            } else {
                s.proto = s.next_hdr;
                ports(ctx, s, 40)?;
            }
        }
        _ => return None,
    }
    Some(())
}

/// The ports of the transport header at `off` (TCP and UDP read in place).
#[inline(always)]
fn ports(ctx: &SkBuffContext, s: &mut Head, off: usize) -> Option<()> {
    (s.sport, s.dport) = if s.proto == IPPROTO_TCP || s.proto == IPPROTO_UDP {
        let (sport, dport, ..) = tcp_udp(ctx, s.proto, off)?;
        (sport, dport)
    } else {
        let (sport, dport, ..) = transport(ctx, s.proto, off)?;
        (sport, verdict_port(s.proto, dport))
    };
    Some(())
}

/// Whether the policy in force allowed this (simple) packet's destination recently.
#[inline(always)]
fn cached(s: &Head) -> bool {
    let a = active(s.policy);
    allowed::covers(&a, &allowed::key(&a, s.family, s.proto, s.dport, s.daddr))
}

#[inline(always)]
fn try_skb_egress(ctx: &SkBuffContext) -> Option<i32> {
    // SAFETY: the helper reads the context's socket.
    let cgroup_id = unsafe { bpf_skb_cgroup_id(ctx.skb.skb.cast()) };
    let mut s = blank(cgroup_id);
    s.policy = policy_of_skb(ctx.skb.skb.cast(), cgroup_id);
    header(ctx, &mut s)?;
    if s.proto == IPPROTO_UDP {
        remember_udp(&s);
    }
    if blocked(cgroup_id, s.daddr, s.family) {
        bump(STAT_EXFIL_BLOCKED);
        return Some(DROP);
    }
    // Most packets go to a destination just allowed: that check first.
    if s.simple == 1 && cached(&s) {
        return Some(let_out(ctx, s.policy));
    }
    if let Some(sk) = full_socket(ctx) {
        // SAFETY: a full socket: these fields are readable.
        let (protocol, state) = unsafe { ((*sk).protocol, (*sk).state) };
        // A listener's SYN-ACK or RST, or a connection the remote side opened (unless the
        // workload gave it IP options or extension headers, which may route it elsewhere:
        // those packets meet the full verdict).
        if (protocol == IPPROTO_TCP && state == BPF_TCP_LISTEN) || (s.simple == 1 && opened_by_peer(sk)) {
            return Some(let_out(ctx, s.policy));
        }
    }
    let slot = RF_SKB_SCRATCH.get_ptr_mut(0)?;
    // SAFETY: this CPU's scratch slot; the tail-called programs run on this CPU right after.
    hand_off(ctx, unsafe { &mut *slot }, &s);
    let tail = if s.simple == 1 { verdict_slot(s.family) } else { SKB_TAIL_PARSE };
    // SAFETY: the slot holds one of our cgroup_skb programs.
    let _ = unsafe { RF_SKB_TAILS.tail_call(ctx, tail) };
    Some(DROP)
}

/// Lets out a packet the backstop passes, through the exfiltration budgets when `policy`'s
/// table has any: `rf_skb_budget` runs as a tail call and its return is the packet's (a failed
/// tail call drops: fail closed). A policy without budgets costs one array read here instead
/// of a second program on every packet.
#[inline(always)]
pub fn let_out(ctx: &SkBuffContext, policy: u32) -> i32 {
    if !budgets_configured(active_table(policy, DIR_EGRESS)) {
        return PASS;
    }
    // SAFETY: the slot holds our cgroup_skb egress budget program.
    let _ = unsafe { RF_SKB_TAILS.tail_call(ctx, SKB_TAIL_BUDGET) };
    DROP
}

/// Notes a UDP flow the cgroup sends on: its replies pass the receiving workload's ingress
/// rules (`rf_skb_ingress`).
#[inline(always)]
fn remember_udp(s: &Head) {
    let flow = FlowKey {
        local: s.saddr,
        remote: s.daddr,
        local_port: s.sport,
        remote_port: s.dport,
        proto: s.proto,
        family: s.family,
    };
    if RF_REPLIES.get_ptr(&flow).is_none() {
        let _ = RF_REPLIES.insert(&flow, &0, 0);
    }
}

/// The tail-call slot of the verdict program for `family`.
#[inline(always)]
pub fn verdict_slot(family: u32) -> u32 {
    if family == 4 {
        SKB_TAIL_VERDICT4
    } else {
        SKB_TAIL_VERDICT6
    }
}
