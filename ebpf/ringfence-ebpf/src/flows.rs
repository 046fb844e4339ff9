//! Flow accounting and the packet-path verdict shared by the tcx programs.
use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    maps::{lpm_trie::Key, LpmTrie},
    programs::TcContext,
};
use ringfence_common::{
    cached_applies, key4, key6, Endpoint, FlowKey, FlowStats, TcpSeq, CONFIG_CROSS_BORDER, FLOW_VERDICT_DROP,
    FLOW_VERDICT_PASS, FLOW_VERDICT_PASS_UNPOLICED, FLOW_VERDICT_PLAINTEXT, TCPSEQ_FINISHED, TCPSEQ_STARTED,
    VERDICT_DENY,
};

use crate::{
    maps::*,
    packet::{Packet, TCP_FIN, TCP_RST, TCP_SYN},
    verdict::{decide_v4, decide_wire_v6, Active, Verdict},
};

/// The flow key from the node's side: egress packets go local -> remote, ingress the reverse.
#[inline(always)]
pub fn key(p: &Packet, egress: bool) -> FlowKey {
    let (local, remote, lport, rport) =
        if egress { (p.src, p.dst, p.sport, p.dport) } else { (p.dst, p.src, p.dport, p.sport) };
    FlowKey { local, remote, local_port: lport, remote_port: rport, proto: p.proto, family: p.family }
}

/// Adds the packet to its flow's counters on this CPU. Returns the counters (None if they could
/// not be had) and whether the flow is new (no CPU had seen it).
#[inline(always)]
pub fn account(ctx: &TcContext, k: &FlowKey, p: &Packet, egress: bool) -> (Option<*mut FlowStats>, bool) {
    let now = unsafe { bpf_ktime_get_ns() };
    // One lookup for a known flow (every packet but a flow's first).
    let (s, new) = match RF_FLOWS.get_ptr_mut(k) {
        Some(s) => (s, false),
        None => {
            let fresh = FlowStats { first_seen_ns: now, ..FlowStats::default() };
            let _ = RF_FLOWS.insert(k, &fresh, 0);
            match RF_FLOWS.get_ptr_mut(k) {
                Some(s) => (s, true),
                None => return (None, true),
            }
        }
    };
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
    (Some(s), new)
}

/// Counts the TCP payload bytes that advance the flow's highest sequence number (a
/// retransmission adds nothing) and notes FIN/RST. One shared entry per flow: a socket's packets
/// pass the egress hook one at a time.
#[inline(always)]
pub fn track_seq(k: &FlowKey, p: &Packet) {
    let syn = (p.tcp_flags & TCP_SYN != 0) as u32;
    // A SYN takes one sequence number before its data (TCP Fast Open).
    let start = p.tcp_seq.wrapping_add(syn);
    let end = start.wrapping_add(p.payload);
    let finished = if p.tcp_flags & (TCP_FIN | TCP_RST) != 0 { TCPSEQ_FINISHED } else { 0 };
    let Some(s) = RF_TCPSEQ.get_ptr_mut(k) else {
        let fresh = TcpSeq { data_bytes: p.payload as u64, next_seq: end, flags: TCPSEQ_STARTED | finished };
        let _ = RF_TCPSEQ.insert(k, &fresh, 0);
        return;
    };
    // SAFETY: a value pointer from the map.
    let s = unsafe { &mut *s };
    let ahead = end.wrapping_sub(s.next_seq) as i32;
    if ahead > 0 {
        s.data_bytes += (ahead as u32).min(p.payload) as u64;
        s.next_seq = end;
    }
    s.flags |= finished;
}

/// What the packet path does with an egress packet.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Egress {
    Pass,
    /// Denied by the policy.
    Drop,
    /// Plaintext to a destination that must be encrypted.
    Plaintext,
}

#[inline(always)]
fn in_set<const K: usize>(set: &LpmTrie<[u8; K], u32>, key: [u8; K]) -> bool {
    set.get(Key::new((K * 8) as u32, key)).is_some()
}

/// Whether the destination must only be reached through WireGuard: a peer node, a rule that
/// requires it, or (with crossBorder) any address outside the home region.
#[inline(always)]
fn must_encrypt(p: &Packet, table: u32, cross_border: bool, rule_requires: bool) -> bool {
    if rule_requires {
        return true;
    }
    let (peer, home) = if p.family == 4 {
        let k = key4(table, [p.dst[0], p.dst[1], p.dst[2], p.dst[3]]);
        (in_set(&RF_ENC4, k), in_set(&RF_HOME4, k))
    } else {
        let k = key6(table, p.dst);
        (in_set(&RF_ENC6, k), in_set(&RF_HOME6, k))
    };
    peer || (cross_border && !home)
}

/// WireGuard's own packets: UDP to a known peer endpoint.
#[inline(always)]
pub fn to_wireguard_peer(p: &Packet) -> bool {
    p.proto == 17 && to_wireguard_peer_addr(p.dst, p.dport, p.family)
}

/// Whether (address, UDP port) is a known WireGuard peer endpoint.
#[inline(always)]
pub fn to_wireguard_peer_addr(addr: [u8; 16], port: u16, family: u32) -> bool {
    RF_WGPEERS.get_ptr(&Endpoint { addr, port: port as u32, family }).is_some()
}

/// The policy's verdict for a packet's destination (`V6`: the program's address family).
#[inline(always)]
pub fn verdict_for<const V6: bool>(a: &Active, p: &Packet) -> Verdict {
    if !V6 {
        decide_v4(a, [p.dst[0], p.dst[1], p.dst[2], p.dst[3]], p.vport, p.proto)
    } else {
        decide_wire_v6(a, p.dst, p.vport, p.proto)
    }
}

/// Who sent an egress packet, as far as the packet path cares.
#[derive(Clone, Copy)]
pub struct Sender {
    /// The enforced cgroup, or no local socket (forwarded): the policy applies.
    pub policed: bool,
    /// The enforced cgroup through a raw or packet socket: the packet is whatever the workload
    /// wrote, so no flow state (cached pass, inbound flow) exempts it.
    pub crafted: bool,
}

/// The decision for an egress packet, cached per flow (per CPU), policy generation and kind of
/// sender, with the verdict when one was computed (`None` for a cached decision).
#[inline(always)]
pub fn egress<const V6: bool>(
    a: &Active,
    p: &Packet,
    st: Option<*mut FlowStats>,
    who: Sender,
) -> (Egress, Option<Verdict>) {
    let cfg = a.cfg;
    let policed = who.policed;
    if let Some(s) = st.filter(|_| !who.crafted) {
        // SAFETY: as in `account`.
        let st = unsafe { &*s };
        if st.verdict_generation == cfg.generation && cached_applies(st.verdict, policed) {
            let cached = match st.verdict {
                FLOW_VERDICT_PLAINTEXT => Egress::Plaintext,
                FLOW_VERDICT_DROP => Egress::Drop,
                _ => Egress::Pass,
            };
            return (cached, None);
        }
    }
    let v = verdict_for::<V6>(a, p);
    let decision = if must_encrypt(p, a.table, cfg.flags & CONFIG_CROSS_BORDER != 0, v.encrypt) {
        Egress::Plaintext
    } else if policed && v.verdict == VERDICT_DENY {
        Egress::Drop
    } else {
        Egress::Pass
    };
    if let Some(s) = st.filter(|_| !who.crafted) {
        // SAFETY: as in `account`.
        let st = unsafe { &mut *s };
        st.verdict = match decision {
            Egress::Pass if policed => FLOW_VERDICT_PASS,
            Egress::Pass => FLOW_VERDICT_PASS_UNPOLICED,
            Egress::Drop => FLOW_VERDICT_DROP,
            Egress::Plaintext => FLOW_VERDICT_PLAINTEXT,
        };
        st.verdict_generation = v.generation;
    }
    (decision, Some(v))
}
