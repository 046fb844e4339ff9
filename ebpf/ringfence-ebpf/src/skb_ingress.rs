//! `cgroup_skb/ingress`: what reaches a workload's sockets is decided by the ingress rules of
//! the receiving workload's policy (its `ingress` table): the source address, the workload's
//! own port, the protocol.
//!
//! - TCP: only a SYN without ACK (a new inbound connection) is decided; no TCP connection can
//!   exist without one, and every other segment belongs to a connection already let in or
//!   opened by the workload itself. A listener that lets one in is marked for the backstop
//!   (`crate::passive`).
//! - UDP: every datagram, except replies on a flow the workload sent on (`RF_REPLIES`, filled
//!   by the backstop).
//! - Other protocols pass (ICMP errors about the workload's own traffic, echo replies).
//!
//! A policy without ingress rules has an open table (`CONFIG_OPEN`): one array read per packet.
//! Headers that cannot be read are dropped.
use aya_ebpf::{helpers::generated::bpf_skb_cgroup_id, macros::cgroup_skb, programs::SkBuffContext};
use ringfence_common::{
    FlowKey, CONFIG_OPEN, DIR_EGRESS, DIR_INGRESS, HOOK_SKB_INGRESS, STAT_DNS_IGNORED, STAT_INGRESS_DROPPED,
    VERDICT_ALLOW, VERDICT_DENY,
};

use crate::{
    dns::{learn, AnswerAt},
    event::{emit_packet, Dest},
    iphdr::{addr_bytes, is_v6_ext, peek, tcp_udp, v6_ext, Flag, IPPROTO_TCP, IPPROTO_UDP},
    maps::{bump, RF_REPLIES},
    passive::mark_listener,
    skb_egress::{full_socket, BPF_TCP_LISTEN, DROP, PASS},
    verdict::{active_dir, decide_v4, decide_wire_v6, Active},
    workload::policy_of_skb,
};

const TCP_SYN: u32 = 0x02;
const TCP_ACK: u32 = 0x10;
const DNS_PORT: u16 = 53;

/// A DNS answer to a workload (from port 53): UDP carries one message, TCP a 2-byte length
/// and the message (learned when the segment starts with it; a message split over segments
/// is learned as far as the first one holds it).
#[inline(always)]
fn learn_answer(ctx: &SkBuffContext, a: &Active, family: u32, src: &[u8; 16], proto: u32, payload: usize) {
    let total = ctx.len() as usize;
    if payload >= total {
        return;
    }
    let (off, len) = if proto == IPPROTO_UDP {
        (payload, total - payload)
    } else {
        let Ok(prefix) = ctx.load::<[u8; 2]>(payload) else { return };
        let want = u16::from_be_bytes(prefix) as usize;
        let have = total.saturating_sub(payload + 2);
        (payload + 2, if want < have { want } else { have })
    };
    learn(ctx, a, &AnswerAt { family, off: off as u32, len: len as u32, src: *src });
}

/// Whether a packet from port 53 arrives on a conversation the workload opened, so that an
/// answer forged from the resolver's address to some other open port teaches nothing: UDP on a
/// flow the workload sent on (`RF_REPLIES`, filled by the backstop), TCP on a connected socket
/// (one the kernel matched by its four-tuple; a listener takes packets from anyone). Not inlined:
/// its frame is its own.
#[inline(never)]
fn answers_a_query(ctx: &SkBuffContext, flow: &FlowKey) -> bool {
    if flow.proto == IPPROTO_UDP {
        return RF_REPLIES.get_ptr(flow).is_some();
    }
    // SAFETY: a full socket from `full_socket`: its state is readable.
    full_socket(ctx).is_some_and(|sk| unsafe { (*sk).state } != BPF_TCP_LISTEN)
}

/// Lets a new connection or a datagram in. A TCP listener let a connection in is marked
/// (`crate::passive`): the socket it accepts inherits the mark, and the backstop passes that
/// connection's packets as replies.
#[inline(always)]
fn let_in(ctx: &SkBuffContext, proto: u32) -> i32 {
    if proto == IPPROTO_TCP {
        if let Some(sk) = full_socket(ctx) {
            // SAFETY: a full socket from `full_socket`: its state is readable.
            if unsafe { (*sk).state } == BPF_TCP_LISTEN {
                mark_listener(sk);
            }
        }
    }
    PASS
}

#[cgroup_skb(ingress)]
pub fn rf_skb_ingress(ctx: SkBuffContext) -> i32 {
    try_skb_ingress(&ctx).unwrap_or(DROP)
}

#[inline(always)]
fn try_skb_ingress(ctx: &SkBuffContext) -> Option<i32> {
    // A 4-byte read: a 1-byte bounds check compiles to a form the verifier does not follow.
    let first = peek::<u32>(ctx, 0)?.to_ne_bytes()[0];
    let mut src = [0u32; 4];
    let mut dst = [0u32; 4];
    let (family, proto, off) = match first >> 4 {
        4 => {
            let h: [u32; 5] = peek(ctx, 0)?;
            (src[0], dst[0]) = (h[3], h[4]);
            (4, h[2].to_ne_bytes()[1] as u32, ((first & 0x0f) as usize) * 4)
        }
        6 => {
            let h: [u32; 10] = peek(ctx, 0)?;
            src = [h[2], h[3], h[4], h[5]];
            dst = [h[6], h[7], h[8], h[9]];
            let next = h[1].to_ne_bytes()[2] as u32;
            if is_v6_ext(next) {
                let l4 = v6_ext(ctx, next, 40, &mut Flag(false))?;
                (6, l4.proto, l4.off)
            } else {
                (6, next, 40)
            }
        }
        _ => return Some(PASS),
    };
    if proto != IPPROTO_TCP && proto != IPPROTO_UDP {
        return Some(PASS);
    }
    let (sport, dport, flags, l4_len) = tcp_udp(ctx, proto, off)?;
    // Segments of established connections (most packets) pass before anything is looked up.
    let tcp_known = proto == IPPROTO_TCP && (flags & TCP_SYN == 0 || flags & TCP_ACK != 0);
    if tcp_known && sport != DNS_PORT {
        return Some(PASS);
    }
    let (src, dst) = (addr_bytes(src), addr_bytes(dst));
    // SAFETY: the program's own skb.
    let cgroup_id = unsafe { bpf_skb_cgroup_id(ctx.skb.skb.cast()) };
    let flow = FlowKey { local: dst, remote: src, local_port: dport, remote_port: sport, proto, family };
    if sport == DNS_PORT {
        if answers_a_query(ctx, &flow) {
            let policy = policy_of_skb(ctx.skb.skb.cast(), cgroup_id);
            learn_answer(ctx, &active_dir(policy, DIR_EGRESS), family, &src, proto, off + l4_len);
        } else {
            bump(STAT_DNS_IGNORED);
        }
    }
    if tcp_known {
        return Some(PASS);
    }
    let a = active_dir(policy_of_skb(ctx.skb.skb.cast(), cgroup_id), DIR_INGRESS);
    if a.cfg.flags & CONFIG_OPEN != 0 {
        return Some(let_in(ctx, proto));
    }
    if proto == IPPROTO_UDP && RF_REPLIES.get_ptr(&flow).is_some() {
        return Some(PASS);
    }
    let v = if family == 4 {
        decide_v4(&a, [src[0], src[1], src[2], src[3]], dport, proto)
    } else {
        decide_wire_v6(&a, src, dport, proto)
    };
    if v.verdict == VERDICT_ALLOW {
        return Some(let_in(ctx, proto));
    }
    let dest = Dest { daddr: src, family, port: dport, protocol: proto, hook: HOOK_SKB_INGRESS };
    emit_packet(&dest, &v, cgroup_id, &flow, false);
    if v.verdict != VERDICT_DENY {
        return Some(let_in(ctx, proto)); // audit mode
    }
    bump(STAT_INGRESS_DROPPED);
    Some(DROP)
}
