//! `cgroup/connect6`: the verdict for connect() to an IPv6 destination (a TCP socket's
//! passive-open mark is cleared first: its connection is the workload's own).
use aya_ebpf::{macros::cgroup_sock_addr, programs::SockAddrContext};
use ringfence_common::HOOK_CONNECT6;

#[cgroup_sock_addr(connect6)]
pub fn rf_connect6(ctx: SockAddrContext) -> i32 {
    crate::passive::clear_on_connect(&ctx);
    crate::sockaddr::handle_v6(&ctx, HOOK_CONNECT6)
}
