//! tcx egress on an uplink: per-flow accounting, and the same verdict as the connect hooks for
//! packets from the enforced cgroup's sockets (raw and packet sockets included) and for packets
//! without a local socket (forwarded from container namespaces). Replies within flows the remote
//! side opened are not policed (for ICMP only echo replies to echo requests that came in).
//! Exactly identified link-scope control (ARP; neighbour discovery, MLD and IGMP sent by the
//! kernel) passes; other non-IP frames of the enforced cgroup are dropped and counted, and IP
//! behind VLAN tags is decided like untagged IP. Policed packets that may carry a source route
//! (IPv4 with options, IPv6 with a routing header) are dropped: the cgroup backstop decides each
//! hop of its own packets; the packet path does not.
//! Plaintext to destinations that must be encrypted (peer nodes, rules that require it, anything
//! outside the home region with crossBorder) is dropped and reported, whoever sends it; only
//! WireGuard's own UDP to a known peer endpoint carries such traffic out. Packets of a flow whose
//! (cgroup, destination) has an exfiltration block are dropped before anything else.
use aya_ebpf::{
    bindings::bpf_sock, helpers::generated::bpf_sk_fullsock, macros::classifier, programs::TcContext,
};
use ringfence_common::{
    FlowKey, FLOW_VERDICT_PASS, FLOW_VERDICT_PASS_UNPOLICED, HOOK_TC_EGRESS, RULE_SOURCE_ROUTE,
    STAT_EXFIL_BLOCKED, STAT_NONIP_DROPPED, STAT_PACKETS_DROPPED, STAT_PLAINTEXT_DROPPED,
    VERDICT_PLAINTEXT_DROP,
};

use crate::{
    block::blocked,
    event::{emit_packet, Dest},
    flows::{account, egress, key, to_wireguard_peer, track_seq, Egress, Sender},
    maps::{bump, Handoff, RF_CGROUP, RF_FLOWS, RF_HANDOFF, RF_INBOUND, RF_TAILS},
    packet::{parse, Frame, Packet},
    verdict::{active, refusal, Active, Verdict},
    workload::policy_of_skb,
};

/// tcx return values.
const TCX_NEXT: i32 = -1;
const TCX_DROP: i32 = 2;

#[classifier]
pub fn rf_tc_egress(ctx: TcContext) -> i32 {
    try_tc_egress(&ctx).unwrap_or(TCX_NEXT)
}

/// The sending socket's cgroup (0: none).
#[inline(always)]
fn sender_cgroup(ctx: &TcContext) -> u64 {
    // SAFETY: the program's own skb.
    unsafe { aya_ebpf::helpers::bpf_skb_cgroup_id(ctx.skb.skb) }
}

/// Whether the sender's cgroup `cgroup_id` is (under) the enforced cgroup root.
#[inline(always)]
fn enforced(ctx: &TcContext, cgroup_id: u64) -> bool {
    cgroup_id != 0 && ctx.skb_under_cgroup(&RF_CGROUP, 0).unwrap_or(false)
}

const AF_PACKET: u32 = 17;
const SOCK_RAW: u32 = 3;

/// Whether the sending socket writes whole packets itself: a packet socket or a raw socket.
#[inline(always)]
fn crafted_socket(ctx: &TcContext) -> bool {
    // SAFETY: the context's socket pointer (null checked) through the fullsock helper.
    unsafe {
        let sk = (*ctx.skb.skb).__bindgen_anon_2.sk;
        if sk.is_null() {
            return false;
        }
        let full = bpf_sk_fullsock(sk.cast()) as *mut bpf_sock;
        !full.is_null() && ((*full).family == AF_PACKET || (*full).type_ == SOCK_RAW)
    }
}

#[inline(always)]
fn try_tc_egress(ctx: &TcContext) -> Option<i32> {
    let p = match parse(ctx)? {
        Frame::Ip(p) => p,
        Frame::Arp => return Some(TCX_NEXT),
        Frame::Other => {
            if enforced(ctx, sender_cgroup(ctx)) {
                bump(STAT_NONIP_DROPPED);
                return Some(TCX_DROP);
            }
            return Some(TCX_NEXT);
        }
    };
    let k = key(&p, true);
    let (stats, _) = account(ctx, &k, &p, true);
    if p.proto == 6 {
        track_seq(&k, &p);
    }
    if let Some(s) = stats {
        // SAFETY: per-CPU value pointer from the flow map; `account` set the sender's cgroup.
        let st = unsafe { &mut *s };
        if blocked(st.cgroup_id, p.dst, p.family) {
            st.dropped_packets += 1;
            bump(STAT_EXFIL_BLOCKED);
            return Some(TCX_DROP);
        }
    }
    // A pass cached for a policed sender holds for anyone sending to the same destination, port
    // and protocol (no sender lookup on the hot path) — unless the packet may be source-routed.
    let cgroup_id = sender_cgroup(ctx);
    let policy = policy_of_skb(ctx.skb.skb, cgroup_id);
    let a = active(policy);
    if p.routed == 0 && passed_before(stats, FLOW_VERDICT_PASS, &a) {
        return Some(TCX_NEXT);
    }
    let enforced = enforced(ctx, cgroup_id);
    let who = Sender { policed: cgroup_id == 0 || enforced, crafted: enforced && crafted_socket(ctx) };
    // The kernel's own link-scope control (IGMP carries a Router Alert option) passes first.
    if !enforced && p.is_link_control() {
        return Some(TCX_NEXT);
    }
    if who.policed && p.routed != 0 {
        return Some(drop_routed(&a, &p, &k, cgroup_id));
    }
    let exempt = (!who.policed && passed_before(stats, FLOW_VERDICT_PASS_UNPOLICED, &a))
        || to_wireguard_peer(&p)
        || (p.may_reply() && RF_INBOUND.get_ptr(&k).is_some());
    if exempt && !who.crafted {
        return Some(TCX_NEXT);
    }
    let slot = RF_HANDOFF.get_ptr_mut(0)?;
    // SAFETY: this CPU's scratch slot; the tail-called program runs on the same CPU right after.
    unsafe {
        *slot = Handoff {
            packet: p,
            key: k,
            cgroup_id,
            policed: who.policed as u32,
            crafted: who.crafted as u32,
            policy,
            _pad: 0,
        }
    };
    // The verdict runs as its own program, one per family: the verifier checks it with fresh
    // state instead of once per path through the parser above. A failed tail call (slot empty)
    // lets the packet go.
    unsafe { RF_TAILS.tail_call(ctx, if p.family == 4 { 0 } else { 1 }) };
    Some(TCX_NEXT)
}

#[inline(always)]
fn drop_routed(a: &Active, p: &Packet, k: &FlowKey, cgroup_id: u64) -> i32 {
    let v = refusal(a, RULE_SOURCE_ROUTE);
    report(p, k, cgroup_id, &v);
    if v.verdict == ringfence_common::VERDICT_DENY {
        bump(STAT_PACKETS_DROPPED);
        TCX_DROP
    } else {
        TCX_NEXT
    }
}

/// Reports a packet-level verdict (rate limited per flow; the process from the connect hooks).
#[inline(always)]
fn report(p: &Packet, k: &FlowKey, cgroup_id: u64, v: &Verdict) {
    let dest =
        Dest { daddr: p.dst, family: p.family, port: p.dport, protocol: p.proto, hook: HOOK_TC_EGRESS };
    emit_packet(&dest, v, cgroup_id, k, false);
}

/// Fast path: this flow already passed (as `verdict`) under the policy generation in force
/// (the common case for every packet after a flow's first), so no verdict program is needed.
#[inline(always)]
fn passed_before(stats: Option<*mut ringfence_common::FlowStats>, verdict: u32, a: &Active) -> bool {
    let Some(s) = stats else { return false };
    let cfg = a.cfg;
    // SAFETY: per-CPU value pointer from the flow map.
    let st = unsafe { &*s };
    st.verdict == verdict && st.verdict_generation == cfg.generation
}

/// The IPv4 egress verdict, tail-called by [`rf_tc_egress`] with the packet in `RF_HANDOFF`.
#[classifier]
pub fn rf_tc_verdict4(_ctx: TcContext) -> i32 {
    try_tc_verdict::<false>().unwrap_or(TCX_NEXT)
}

/// The IPv6 egress verdict.
#[classifier]
pub fn rf_tc_verdict6(_ctx: TcContext) -> i32 {
    try_tc_verdict::<true>().unwrap_or(TCX_NEXT)
}

#[inline(always)]
fn try_tc_verdict<const V6: bool>() -> Option<i32> {
    // SAFETY: this CPU's scratch slot, written by rf_tc_egress just before the tail call.
    let h = unsafe { &*RF_HANDOFF.get_ptr(0)? };
    let stats = RF_FLOWS.get_ptr_mut(&h.key);
    let a = active(h.policy);
    let (decision, verdict) =
        egress::<V6>(&a, &h.packet, stats, Sender { policed: h.policed != 0, crafted: h.crafted != 0 });
    if decision == Egress::Pass {
        return Some(TCX_NEXT);
    }
    if let Some(s) = stats {
        // SAFETY: per-CPU value pointer from the flow map.
        unsafe { (*s).dropped_packets += 1 };
    }
    let cfg = a.cfg;
    let mut v = verdict.unwrap_or(Verdict {
        verdict: ringfence_common::VERDICT_DENY,
        rule_id: ringfence_common::RULE_DEFAULT,
        generation: cfg.generation,
        country: 0,
        encrypt: false,
    });
    if decision == Egress::Plaintext {
        bump(STAT_PLAINTEXT_DROPPED);
        v.verdict = VERDICT_PLAINTEXT_DROP;
    } else {
        bump(STAT_PACKETS_DROPPED);
    }
    report(&h.packet, &h.key, h.cgroup_id, &v);
    Some(TCX_DROP)
}
