//! The backstop's tail calls: `rf_skb_parse` walks IPv4 options and IPv6 extension headers
//! (collecting source-route hops and finding the transport header), `rf_skb_verdict` decides one
//! address per call and calls itself for the next. A packet is let out only when every address
//! it will travel to is allowed.
use aya_ebpf::{helpers::bpf_get_current_cgroup_id, macros::cgroup_skb, programs::SkBuffContext};
use ringfence_common::{
    FlowKey, HOOK_SKB_EGRESS, RULE_SOURCE_ROUTE, SKB_TAIL_VERDICT4, SKB_TAIL_VERDICT6, STAT_BACKSTOP_DECIDED,
    STAT_BACKSTOP_DROPPED, VERDICT_ALLOW, VERDICT_DENY,
};

use crate::{
    allowed,
    event::{emit_packet, Dest},
    handoff::{self, Packet},
    iphdr::{transport, v4_options, v6_ext, verdict_port, Hops},
    maps::{bump, SkbScratch, MAX_ROUTE, RF_SKB_SCRATCH, RF_SKB_TAILS},
    skb_egress::{let_out, verdict_slot, DROP},
    verdict::{active, decide_v4, decide_wire_v6, refusal, Verdict},
};

/// Source-route hops go after the destination in the scratch list.
struct Route<'a>(&'a mut SkbScratch);

impl Hops for Route<'_> {
    const COLLECT: bool = true;
    #[inline(always)]
    fn push(&mut self, addr: [u8; 16]) -> bool {
        let i = self.0.count as usize;
        if i >= MAX_ROUTE {
            return false;
        }
        self.0.addrs[i] = addr;
        self.0.count += 1;
        true
    }
}

/// This CPU's scratch record, when it still holds this packet, and the packet's control block
/// (`crate::handoff`).
#[inline(always)]
fn scratch(ctx: &SkBuffContext) -> Option<(&'static mut SkbScratch, Packet)> {
    // SAFETY: this CPU's scratch slot, written by rf_skb_egress before the tail call.
    let s = RF_SKB_SCRATCH.get_ptr_mut(0).map(|p| unsafe { &mut *p })?;
    let p = Packet::read(ctx);
    p.holds(s).then_some((s, p))
}

#[cgroup_skb(egress)]
pub fn rf_skb_parse(ctx: SkBuffContext) -> i32 {
    let Some((s, p)) = scratch(&ctx) else { return DROP };
    if walk(&ctx, s).is_none() {
        // Malformed, unknown routing header type or more hops than can be decided.
        return deny(&ctx, s, &p, 0, &refusal(&active(s.policy), RULE_SOURCE_ROUTE));
    }
    // SAFETY: the slot holds the family's verdict program.
    let _ = unsafe { RF_SKB_TAILS.tail_call(&ctx, verdict_slot(s.family)) };
    DROP
}

#[inline(always)]
fn walk(ctx: &SkBuffContext, s: &mut SkbScratch) -> Option<()> {
    if s.family == 4 {
        let end = s.l4_off as usize;
        v4_options(ctx, 20, end, &mut Route(s))
    } else {
        let (next, off) = (s.next_hdr, s.l4_off as usize);
        let l4 = v6_ext(ctx, next, off, &mut Route(s))?;
        let (sport, dport) = if l4.fragment {
            (0, 0)
        } else {
            let (sport, dport, ..) = transport(ctx, l4.proto, l4.off)?;
            (sport, verdict_port(l4.proto, dport))
        };
        handoff::set_l4(ctx, l4.proto, sport, dport);
        Some(())
    }
}

#[cgroup_skb(egress)]
pub fn rf_skb_verdict4(ctx: SkBuffContext) -> i32 {
    skb_verdict::<false>(&ctx)
}

#[cgroup_skb(egress)]
pub fn rf_skb_verdict6(ctx: SkBuffContext) -> i32 {
    skb_verdict::<true>(&ctx)
}

/// Decides the packet's next address (one address family per program, which halves the
/// verifier's work), then calls itself for the one after.
#[inline(always)]
fn skb_verdict<const V6: bool>(ctx: &SkBuffContext) -> i32 {
    let Some((s, mut p)) = scratch(ctx) else { return DROP };
    let i = p.next as usize;
    if i == 0 {
        bump(STAT_BACKSTOP_DECIDED);
    }
    if i < MAX_ROUTE && i < s.count as usize {
        let addr = s.addrs[i];
        let a = active(s.policy);
        let v = if !V6 {
            decide_v4(&a, [addr[0], addr[1], addr[2], addr[3]], p.dport, p.proto)
        } else {
            decide_wire_v6(&a, addr, p.dport, p.proto)
        };
        if v.verdict != VERDICT_ALLOW {
            if v.verdict == VERDICT_DENY {
                return deny(ctx, s, &p, i, &v);
            }
            report(s, &p, i, &v);
            p.audited = true;
        }
        if ((i + 1) as usize) < s.count as usize {
            handoff::save_progress(ctx, (i + 1) as u32, p.audited);
            let slot = if V6 { SKB_TAIL_VERDICT6 } else { SKB_TAIL_VERDICT4 };
            // SAFETY: the slot holds this program.
            let _ = unsafe { RF_SKB_TAILS.tail_call(ctx, slot) };
            return DROP;
        }
    }
    // Decided on this packet's details only if nothing claimed the record meanwhile.
    if !p.holds(s) {
        return DROP;
    }
    if s.simple == 1 && !p.audited {
        remember(s, &p);
    }
    let_out(ctx, s.policy)
}

/// Notes the allowed destination in the verdict cache (a socket connected before the agent
/// started, or a raw or ping socket, was not noted by the connect hooks).
#[inline(always)]
fn remember(s: &SkbScratch, p: &Packet) {
    let a = active(s.policy);
    allowed::note(&a, &allowed::key(&a, s.family, p.proto, p.dport, s.addrs[0]));
}

/// Reports a refused (or, in audit mode, would-be refused) address `i` of the packet. Not
/// inlined: its frame is not on the stack while the verdict runs.
#[inline(never)]
fn report(s: &SkbScratch, p: &Packet, i: usize, v: &Verdict) {
    let daddr = if i < MAX_ROUTE { s.addrs[i] } else { s.addrs[0] };
    let (proto, sport, dport) = (p.proto, p.sport, p.dport);
    let dest = Dest { daddr, family: s.family, port: dport, protocol: proto, hook: HOOK_SKB_EGRESS };
    let flow = FlowKey {
        local: s.saddr,
        remote: daddr,
        local_port: sport,
        remote_port: dport,
        proto,
        family: s.family,
    };
    // The sending task's context when it is one of the cgroup's (not a softirq retransmission).
    let in_process = unsafe { bpf_get_current_cgroup_id() } == s.cgroup_id;
    emit_packet(&dest, v, s.cgroup_id, &flow, in_process);
}

#[inline(always)]
fn deny(ctx: &SkBuffContext, s: &SkbScratch, p: &Packet, i: usize, v: &Verdict) -> i32 {
    report(s, p, i, v);
    if v.verdict != VERDICT_DENY {
        // Audit mode: let out, if the record still holds this packet.
        return if p.holds(s) { let_out(ctx, s.policy) } else { DROP };
    }
    bump(STAT_BACKSTOP_DROPPED);
    DROP
}
