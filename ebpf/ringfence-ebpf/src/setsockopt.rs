//! `cgroup/setsockopt`: socket options that would let the enforced cgroup's frames skip the
//! packet path are refused: PACKET_QDISC_BYPASS on packet sockets (frames straight to the
//! driver, past tcx) and every XDP socket option (an XDP socket cannot be set up without them).
//! Runs for sockets created in the cgroup, whatever their family.
use aya_ebpf::{macros::cgroup_sockopt, programs::SockoptContext};
use ringfence_common::{HOOK_SETSOCKOPT, RULE_RAW_SOCKETS};

use crate::{
    event::SocketEvent,
    socket_create::refuse,
    verdict::{active, refusal},
    workload::policy_of_current,
};

const SOL_PACKET: i32 = 263;
const PACKET_QDISC_BYPASS: i32 = 20;
const SOL_XDP: i32 = 283;

#[cgroup_sockopt(setsockopt)]
pub fn rf_setsockopt(ctx: SockoptContext) -> i32 {
    // SAFETY: the context's fields.
    let (level, optname) = unsafe { ((*ctx.sockopt).level, (*ctx.sockopt).optname) };
    let bypass = (level == SOL_PACKET && optname == PACKET_QDISC_BYPASS) || level == SOL_XDP;
    if !bypass {
        return 1;
    }
    // SAFETY: the context's socket pointer (checked for null), readable bpf_sock fields.
    let (family, ty, protocol) = unsafe {
        let sk = (*ctx.sockopt).__bindgen_anon_1.sk;
        if sk.is_null() {
            (0, 0, 0)
        } else {
            ((*sk).family, (*sk).type_, (*sk).protocol)
        }
    };
    let ev =
        SocketEvent { family, ty, protocol, level: level as u32, opt: optname as u32, hook: HOOK_SETSOCKOPT };
    refuse(&ev, &refusal(&active(policy_of_current()), RULE_RAW_SOCKETS))
}
