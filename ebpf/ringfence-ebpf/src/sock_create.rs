//! `cgroup/sock_create`: raw IP sockets (SOCK_RAW, IPv4 and IPv6) of the enforced cgroup are
//! refused unless the policy says `rawSockets: policy` (their packets are then decided by the
//! backstop like any other). Ping sockets (SOCK_DGRAM, ICMP) are allowed; the backstop decides
//! their packets. Works on every kernel with cgroup BPF.
use aya_ebpf::{macros::cgroup_sock, programs::SockContext};
use ringfence_common::{CONFIG_RAW_POLICY, HOOK_SOCK_CREATE, RULE_RAW_SOCKETS};

use crate::{
    event::SocketEvent,
    socket_create::refuse,
    verdict::{active, refusal},
    workload::policy_of_current,
};

const SOCK_RAW: u32 = 3;

#[cgroup_sock(sock_create)]
pub fn rf_sock_create(ctx: SockContext) -> i32 {
    // SAFETY: the context's socket, readable fields of bpf_sock.
    let (family, ty, protocol) = unsafe { ((*ctx.sock).family, (*ctx.sock).type_, (*ctx.sock).protocol) };
    if ty != SOCK_RAW {
        return 1;
    }
    let a = active(policy_of_current());
    if a.cfg.flags & CONFIG_RAW_POLICY != 0 {
        return 1;
    }
    let ev = SocketEvent { family, ty, protocol, level: 0, opt: 0, hook: HOOK_SOCK_CREATE };
    refuse(&ev, &refusal(&a, RULE_RAW_SOCKETS))
}
