//! `lsm_cgroup/socket_create`: the enforced cgroup may not create packet sockets (AF_PACKET)
//! or XDP sockets, whose frames no other hook decides before they leave (with
//! PACKET_QDISC_BYPASS or AF_XDP they even skip the packet path). Needs a kernel that runs BPF
//! LSM programs; the agent attaches it only after proving that (see the agent's `selfcheck`).
//! Raw IP sockets are refused by `rf_sock_create` on every kernel.
use aya_ebpf::{macros::lsm_cgroup, programs::LsmContext};
use ringfence_common::{HOOK_SOCKET_CREATE, RULE_RAW_SOCKETS, STAT_SOCKETS_REFUSED, STAT_SOCKET_GUARD_SEEN};

use crate::{
    event::{emit_socket, SocketEvent},
    maps::bump,
    verdict::{active, refusal, Verdict},
    workload::policy_of_current,
};

const AF_PACKET: i32 = 17;
const AF_XDP: i32 = 44;
/// The socket type without SOCK_NONBLOCK / SOCK_CLOEXEC.
const SOCK_TYPE_MASK: i32 = 0xf;

/// lsm_cgroup return values.
const ALLOW: i32 = 1;
const REFUSE: i32 = 0;

#[lsm_cgroup(hook = "socket_create")]
pub fn rf_socket_create(ctx: LsmContext) -> i32 {
    // int socket_create(int family, int type, int protocol, int kern)
    let family: i32 = ctx.arg(0);
    let ty: i32 = ctx.arg(1);
    let protocol: i32 = ctx.arg(2);
    let kern: i32 = ctx.arg(3);
    if kern != 0 {
        return ALLOW;
    }
    bump(STAT_SOCKET_GUARD_SEEN);
    if family != AF_PACKET && family != AF_XDP {
        return ALLOW;
    }
    let v = refusal(&active(policy_of_current()), RULE_RAW_SOCKETS);
    let ev = SocketEvent {
        family: family as u32,
        ty: (ty & SOCK_TYPE_MASK) as u32,
        protocol: protocol as u32,
        level: 0,
        opt: 0,
        hook: HOOK_SOCKET_CREATE,
    };
    refuse(&ev, &v)
}

/// Reports the refusal; refuses unless the policy is in audit mode.
#[inline(always)]
pub fn refuse(ev: &SocketEvent, v: &Verdict) -> i32 {
    emit_socket(ev, v);
    if v.verdict != ringfence_common::VERDICT_DENY {
        return ALLOW; // audit mode: reported, not refused
    }
    bump(STAT_SOCKETS_REFUSED);
    REFUSE
}
