//! Ringfence kernel programs: egress verdicts for a cgroup at connect/sendmsg, on every packet
//! it sends (backstop) and on the node's uplinks (packet path), and socket-creation guards.
//!
//! One module per hook; the shared verdict logic lives in `verdict`, the maps in `maps`.
#![no_std]
// Atomic read-modify-write on map values (`budget`): core's atomic types offer none on bpfel.
#![feature(core_intrinsics)]
#![allow(internal_features)]
#![no_main]

mod active;
mod allowed;
mod block;
mod budget;
mod connect4;
mod connect6;
mod dns;
mod event;
mod flows;
mod handoff;
mod iphdr;
mod maps;
mod packet;
mod passive;
mod sendmsg4;
mod sendmsg6;
mod setsockopt;
mod skb_budget;
mod skb_egress;
mod skb_ingress;
mod skb_tail;
mod sock_create;
mod sockaddr;
mod socket_create;
mod tc_egress;
mod tc_ingress;
mod verdict;
mod workload;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
