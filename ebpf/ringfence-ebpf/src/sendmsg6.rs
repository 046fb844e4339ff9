//! `cgroup/sendmsg6`: the verdict for an unconnected sendto()/sendmsg() (UDP) to an IPv6 destination.
use aya_ebpf::{macros::cgroup_sock_addr, programs::SockAddrContext};
use ringfence_common::HOOK_SENDMSG6;

#[cgroup_sock_addr(sendmsg6)]
pub fn rf_sendmsg6(ctx: SockAddrContext) -> i32 {
    crate::sockaddr::handle_v6(&ctx, HOOK_SENDMSG6)
}
