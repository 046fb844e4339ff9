//! tcx egress on an uplink: per-flow accounting, and the same verdict as the connect hooks for
//! packets from the enforced cgroup's sockets (raw and packet sockets included) and for packets
//! without a local socket (forwarded from container namespaces). Replies within flows the remote
//! side opened are not policed; link-local and multicast control traffic is not either.
use aya_ebpf::{macros::classifier, programs::TcContext};
use ringfence_common::STAT_PACKETS_DROPPED;

use crate::{
    flows::{account, allowed, key},
    maps::{bump, RF_CGROUP, RF_INBOUND},
    packet::parse,
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
    let stats = account(ctx, &k, &p, true);
    if p.is_link_control() || RF_INBOUND.get_ptr(&k).is_some() {
        return Some(TCX_NEXT);
    }
    let socket_cgroup = unsafe { aya_ebpf::helpers::bpf_skb_cgroup_id(ctx.skb.skb) };
    let policed = socket_cgroup == 0 || ctx.skb_under_cgroup(&RF_CGROUP, 0).unwrap_or(false);
    if !policed || allowed(&p, stats) {
        return Some(TCX_NEXT);
    }
    bump(STAT_PACKETS_DROPPED);
    if let Some(s) = stats {
        // SAFETY: per-CPU value pointer from the flow map.
        unsafe { (*s).dropped_packets += 1 };
    }
    Some(TCX_DROP)
}
