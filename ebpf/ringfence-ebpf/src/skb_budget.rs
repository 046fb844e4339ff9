//! `cgroup_skb/egress`: exfiltration budgets and the rate cap (`budget`), tail-called by the
//! backstop for each packet it lets out under a policy with budgets (`skb_egress::let_out`);
//! its return is the packet's. A program of its own, not part of the backstop, because the
//! backstop's frame leaves no room on the 512-byte stack; a tail call rather than a second
//! attached program, because that cost every packet of every policy a program run (about
//! 0.13 µs) and a policy without budgets now costs one array read in the backstop.
//!
//! Counting happens here, per workload, because this is the one hook that sees every packet a
//! workload's sockets send (TCP before segmentation, UDP, ICMP, raw) and knows whose it is;
//! the packet path (tcx) sees forwarded traffic and lacks the cgroup of packets sent from
//! softirq context.
use aya_ebpf::{helpers::generated::bpf_skb_cgroup_id, macros::cgroup_skb, programs::SkBuffContext};

use crate::{
    budget::{budgets_configured, charge, Charge, Sent},
    iphdr::{is_v6_ext, transport, verdict_port, IPPROTO_ICMP, IPPROTO_ICMPV6},
    skb_egress::{DROP, PASS},
    verdict::active,
    workload::{policy_of_skb, workload_of_skb},
};

/// Drop, and pass, with congestion notification (egress only): TCP reduces its window instead
/// of treating the send as failed, as the kernel's host bandwidth manager sample does.
const DROP_CN: i32 = 2;
const PASS_CN: i32 = 3;

#[cgroup_skb(egress)]
pub fn rf_skb_budget(ctx: SkBuffContext) -> i32 {
    // An unparseable header is the backstop's to drop.
    match try_budget(&ctx).unwrap_or(Charge::Pass) {
        Charge::Pass => PASS,
        Charge::Drop => DROP,
        Charge::Throttle => DROP_CN,
        Charge::Slow => PASS_CN,
    }
}

#[inline(always)]
fn try_budget(ctx: &SkBuffContext) -> Option<Charge> {
    let skb = ctx.skb.skb;
    // SAFETY: the helper reads the context's socket.
    let cgroup_id = unsafe { bpf_skb_cgroup_id(skb.cast()) };
    let a = active(policy_of_skb(skb.cast(), cgroup_id));
    if !budgets_configured(a.table) {
        return Some(Charge::Pass);
    }
    let mut sent = Sent {
        daddr: [0; 16],
        family: 0,
        proto: 0,
        dport: 0,
        len: ctx.len(),
        cgroup_id,
        workload: workload_of_skb(skb.cast(), cgroup_id),
        table: a.table,
        generation: a.cfg.generation,
    };
    let first: u8 = ctx.load(0).ok()?;
    let l4 = match first >> 4 {
        4 => {
            let h: [u8; 20] = ctx.load(0).ok()?;
            sent.family = 4;
            sent.proto = h[9] as u32;
            sent.daddr[..4].copy_from_slice(&h[16..20]);
            // Only a first fragment has the transport header.
            (u16::from_be_bytes([h[6], h[7]]) & 0x1fff == 0).then_some(((h[0] & 0x0f) as usize) * 4)
        }
        6 => {
            let h: [u8; 40] = ctx.load(0).ok()?;
            sent.family = 6;
            sent.proto = h[6] as u32;
            sent.daddr.copy_from_slice(&h[24..40]);
            // Behind extension headers the packet counts towards the total (no port known).
            (!is_v6_ext(sent.proto)).then_some(40)
        }
        _ => return None,
    };
    if let Some(off) = l4 {
        let (_, dport, ..) = transport(ctx, sent.proto, off)?;
        sent.dport = verdict_port(sent.proto, dport) as u32;
        if sent.proto == IPPROTO_ICMP || sent.proto == IPPROTO_ICMPV6 {
            // ICMP budgets count the payload after the 8-byte ICMP header.
            sent.len = sent.len.saturating_sub(off as u32 + 8);
        }
    }
    Some(charge(&sent))
}
