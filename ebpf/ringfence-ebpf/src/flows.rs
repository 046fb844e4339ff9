//! Flow accounting and the packet-path verdict shared by the tcx programs.
use aya_ebpf::{helpers::bpf_ktime_get_ns, programs::TcContext};
use ringfence_common::{
    FlowKey, FlowStats, FLOW_VERDICT_DROP, FLOW_VERDICT_PASS, FLOW_VERDICT_UNKNOWN, VERDICT_DENY,
};

use crate::{
    maps::RF_FLOWS,
    packet::Packet,
    verdict::{active, decide_v4, decide_v6},
};

/// The flow key from the node's side: egress packets go local -> remote, ingress the reverse.
#[inline(always)]
pub fn key(p: &Packet, egress: bool) -> FlowKey {
    let (local, remote, lport, rport) =
        if egress { (p.src, p.dst, p.sport, p.dport) } else { (p.dst, p.src, p.dport, p.sport) };
    FlowKey { local, remote, local_port: lport, remote_port: rport, proto: p.proto, family: p.family }
}

/// Adds the packet to its flow's counters on this CPU; returns them (None if the map is full
/// of busier flows: LRU eviction keeps accounting going for the rest).
#[inline(always)]
pub fn account(ctx: &TcContext, k: &FlowKey, p: &Packet, egress: bool) -> Option<*mut FlowStats> {
    let now = unsafe { bpf_ktime_get_ns() };
    if RF_FLOWS.get_ptr_mut(k).is_none() {
        let fresh = FlowStats { first_seen_ns: now, ..FlowStats::default() };
        let _ = RF_FLOWS.insert(k, &fresh, 0);
    }
    let s = RF_FLOWS.get_ptr_mut(k)?;
    // SAFETY: a per-CPU value pointer from the map, only this CPU writes it.
    let st = unsafe { &mut *s };
    if st.first_seen_ns == 0 {
        st.first_seen_ns = now;
    }
    st.last_seen_ns = now;
    if egress {
        st.tx_bytes += p.payload as u64;
        st.tx_packets += 1;
        let cg = unsafe { aya_ebpf::helpers::bpf_skb_cgroup_id(ctx.skb.skb) };
        if cg != 0 {
            st.cgroup_id = cg;
        }
    } else {
        st.rx_bytes += p.payload as u64;
        st.rx_packets += 1;
    }
    Some(s)
}

/// Whether the policy lets this egress packet out; cached per flow and policy generation.
#[inline(always)]
pub fn allowed(p: &Packet, st: Option<*mut FlowStats>) -> bool {
    let (_, cfg) = active();
    if let Some(s) = st {
        // SAFETY: as in `account`.
        let st = unsafe { &*s };
        if st.verdict != FLOW_VERDICT_UNKNOWN && st.verdict_generation == cfg.generation {
            return st.verdict == FLOW_VERDICT_PASS;
        }
    }
    let v = if p.family == 4 {
        decide_v4([p.dst[0], p.dst[1], p.dst[2], p.dst[3]], p.dport, p.proto)
    } else {
        decide_v6(p.dst, p.dport, p.proto).0
    };
    let pass = v.verdict != VERDICT_DENY;
    if let Some(s) = st {
        // SAFETY: as in `account`.
        let st = unsafe { &mut *s };
        st.verdict = if pass { FLOW_VERDICT_PASS } else { FLOW_VERDICT_DROP };
        st.verdict_generation = v.generation;
    }
    pass
}
