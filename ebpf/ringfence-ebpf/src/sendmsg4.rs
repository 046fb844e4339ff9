//! `cgroup/sendmsg4`: the verdict for an unconnected sendto()/sendmsg() (UDP) to an IPv4 destination.
use aya_ebpf::{macros::cgroup_sock_addr, programs::SockAddrContext};
use ringfence_common::HOOK_SENDMSG4;

#[cgroup_sock_addr(sendmsg4)]
pub fn rf_sendmsg4(ctx: SockAddrContext) -> i32 {
    crate::sockaddr::handle_v4(&ctx, HOOK_SENDMSG4)
}
