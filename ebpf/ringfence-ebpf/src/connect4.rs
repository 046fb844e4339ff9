//! `cgroup/connect4`: the verdict for connect() to an IPv4 destination (a TCP socket's
//! passive-open mark is cleared first: its connection is the workload's own).
use aya_ebpf::{macros::cgroup_sock_addr, programs::SockAddrContext};
use ringfence_common::HOOK_CONNECT4;

#[cgroup_sock_addr(connect4)]
pub fn rf_connect4(ctx: SockAddrContext) -> i32 {
    crate::passive::clear_on_connect(&ctx);
    crate::sockaddr::handle_v4(&ctx, HOOK_CONNECT4)
}
