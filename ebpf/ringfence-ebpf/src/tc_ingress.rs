//! tcx ingress on an uplink: per-flow accounting, and remembering flows the remote side opened
//! (a TCP SYN, or the first packet of any other flow) so their replies are not egress-policed.
use aya_ebpf::{macros::classifier, programs::TcContext};
use ringfence_common::INBOUND;

use crate::{
    flows::{account, key},
    maps::RF_INBOUND,
    packet::{parse, TCP_ACK, TCP_SYN},
};

const TCX_NEXT: i32 = -1;

#[classifier]
pub fn rf_tc_ingress(ctx: TcContext) -> i32 {
    try_tc_ingress(&ctx);
    TCX_NEXT
}

#[inline(always)]
fn try_tc_ingress(ctx: &TcContext) -> Option<()> {
    let p = parse(ctx)?;
    let k = key(&p, false);
    let (_, new) = account(ctx, &k, &p, false);
    let opened_remotely =
        if p.proto == 6 { p.tcp_flags & (TCP_SYN | TCP_ACK) as u32 == TCP_SYN as u32 } else { new };
    if opened_remotely {
        let _ = RF_INBOUND.insert(&k, &INBOUND, 0);
    }
    Some(())
}
