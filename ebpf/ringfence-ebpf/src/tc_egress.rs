//! tcx egress on an uplink: per-flow accounting, and the same verdict as the connect hooks for
//! packets from the enforced cgroup's sockets (raw and packet sockets included) and for packets
//! without a local socket (forwarded from container namespaces). Replies within flows the remote
//! side opened are not policed; link-local and multicast control traffic is not either.
//! Plaintext to destinations that must be encrypted (peer nodes, rules that require it, anything
//! outside the home region with crossBorder) is dropped and reported, whoever sends it; only
//! WireGuard's own UDP to a known peer endpoint carries such traffic out. Packets of a flow whose
//! (cgroup, destination) has an exfiltration block are dropped before anything else.
use aya_ebpf::{macros::classifier, programs::TcContext};
use ringfence_common::{
    FLOW_VERDICT_PASS, STAT_EXFIL_BLOCKED, STAT_PACKETS_DROPPED, STAT_PLAINTEXT_DROPPED,
    VERDICT_PLAINTEXT_DROP,
};

use crate::{
    block::blocked,
    event::emit_packet,
    flows::{account, egress, key, to_wireguard_peer, Egress},
    maps::{bump, Handoff, RF_CGROUP, RF_FLOWS, RF_HANDOFF, RF_INBOUND, RF_TAILS},
    packet::parse,
    verdict::active,
};

/// tcx return values.
const TCX_NEXT: i32 = -1;
const TCX_DROP: i32 = 2;

#[classifier]
pub fn rf_tc_egress(ctx: TcContext) -> i32 {
    try_tc_egress(&ctx).unwrap_or(TCX_NEXT)
}

#[inline(always)]
fn try_tc_egress(ctx: &TcContext) -> Option<i32> {
    let p = parse(ctx)?;
    let k = key(&p, true);
    let (stats, _) = account(ctx, &k, &p, true);
    if let Some(s) = stats {
        // SAFETY: per-CPU value pointer from the flow map; `account` set the sender's cgroup.
        let st = unsafe { &mut *s };
        if blocked(st.cgroup_id, p.dst, p.family) {
            st.dropped_packets += 1;
            bump(STAT_EXFIL_BLOCKED);
            return Some(TCX_DROP);
        }
    }
    if passed_before(stats)
        || p.is_link_control()
        || to_wireguard_peer(&p)
        || RF_INBOUND.get_ptr(&k).is_some()
    {
        return Some(TCX_NEXT);
    }
    let cgroup_id = unsafe { aya_ebpf::helpers::bpf_skb_cgroup_id(ctx.skb.skb) };
    let policed = cgroup_id == 0 || ctx.skb_under_cgroup(&RF_CGROUP, 0).unwrap_or(false);
    let slot = RF_HANDOFF.get_ptr_mut(0)?;
    // SAFETY: this CPU's scratch slot; the tail-called program runs on the same CPU right after.
    unsafe { *slot = Handoff { packet: p, key: k, cgroup_id, policed: policed as u32, _pad: 0 } };
    // The verdict runs as its own program: the verifier checks it with fresh state instead of
    // once per path through the parser above. A failed tail call (slot empty) lets the packet go.
    unsafe { RF_TAILS.tail_call(ctx, 0) };
    Some(TCX_NEXT)
}

/// Fast path: this flow already passed under the policy generation in force (the common case
/// for every packet after a flow's first), so no verdict program is needed.
#[inline(always)]
fn passed_before(stats: Option<*mut ringfence_common::FlowStats>) -> bool {
    let Some(s) = stats else { return false };
    let (_, cfg) = active();
    // SAFETY: per-CPU value pointer from the flow map.
    let st = unsafe { &*s };
    st.verdict == FLOW_VERDICT_PASS && st.verdict_generation == cfg.generation
}

/// The egress verdict, tail-called by [`rf_tc_egress`] with the packet in `RF_HANDOFF`.
#[classifier]
pub fn rf_tc_verdict(_ctx: TcContext) -> i32 {
    try_tc_verdict().unwrap_or(TCX_NEXT)
}

#[inline(always)]
fn try_tc_verdict() -> Option<i32> {
    // SAFETY: this CPU's scratch slot, written by rf_tc_egress just before the tail call.
    let h = unsafe { *RF_HANDOFF.get_ptr(0)? };
    let stats = RF_FLOWS.get_ptr_mut(&h.key);
    let decision = egress(&h.packet, stats, h.policed != 0);
    if decision == Egress::Pass {
        return Some(TCX_NEXT);
    }
    let first_drop = match stats {
        // SAFETY: per-CPU value pointer from the flow map.
        Some(s) => unsafe {
            (*s).dropped_packets += 1;
            (*s).dropped_packets == 1
        },
        None => true,
    };
    if decision == Egress::Plaintext {
        bump(STAT_PLAINTEXT_DROPPED);
        // One plaintext-leak event per flow (and CPU), not one per packet.
        if first_drop {
            emit_packet(&h.packet, h.cgroup_id, VERDICT_PLAINTEXT_DROP);
        }
    } else {
        bump(STAT_PACKETS_DROPPED);
    }
    Some(TCX_DROP)
}
