//! tcx ingress on an uplink: per-flow accounting, and remembering flows the remote side opened
//! (a TCP SYN, an ICMP echo request, or the first packet of another protocol; never other ICMP)
//! so their replies are not egress-policed.
use aya_ebpf::{macros::classifier, programs::TcContext};
use ringfence_common::INBOUND;

use crate::{
    flows::{account, key},
    maps::RF_INBOUND,
    packet::{parse, Frame},
};

const TCX_NEXT: i32 = -1;

#[classifier]
pub fn rf_tc_ingress(ctx: TcContext) -> i32 {
    try_tc_ingress(&ctx);
    TCX_NEXT
}

#[inline(always)]
fn try_tc_ingress(ctx: &TcContext) -> Option<()> {
    let Frame::Ip(p) = parse(ctx)? else { return None };
    let k = key(&p, false);
    let (_, new) = account(ctx, &k, &p, false);
    if p.opens_inbound(new) {
        let _ = RF_INBOUND.insert(&k, &INBOUND, 0);
    }
    Some(())
}
