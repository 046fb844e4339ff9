//! The passive-open mark: packets of a connection the remote side opened are replies, and the
//! backstop does not police them (as the connect hooks never see such a connection).
//!
//! - `rf_skb_ingress` marks a TCP *listener* when its ingress rules let a new connection in.
//! - The kernel copies the listener's storage to every socket it accepts (`BPF_F_CLONE` on
//!   `RF_SKCACHE`), so accepted connections carry the mark from their first packet, with no
//!   program on the kernel's per-socket TCP callbacks (sockops).
//! - connect() clears it: a listener shut down back to CLOSE, or an accepted socket
//!   disconnected, can connect out, and that connection is the workload's own.
use aya_ebpf::{
    bindings::{bpf_sock, BPF_SK_STORAGE_GET_F_CREATE},
    helpers::generated::bpf_sk_storage_get,
    programs::SockAddrContext,
};
use ringfence_common::{SkVerdict, SK_PASSIVE};

use crate::{iphdr::IPPROTO_TCP, maps::RF_SKCACHE};

/// The socket's storage, created (unmarked) when `create` and missing.
#[inline(always)]
fn storage(sk: *mut bpf_sock, create: bool) -> *mut SkVerdict {
    let mut fresh = SkVerdict::default();
    let (init, flags) = if create {
        ((&mut fresh as *mut SkVerdict).cast(), BPF_SK_STORAGE_GET_F_CREATE as u64)
    } else {
        (core::ptr::null_mut(), 0)
    };
    // SAFETY: a full socket (callers pass one from `bpf_sk_fullsock` or a sock_addr context)
    // and the storage map; `init` is a value of the map's type or null.
    unsafe { bpf_sk_storage_get(RF_SKCACHE.as_ptr(), sk.cast(), init, flags) }.cast()
}

/// Whether the remote side opened the socket's connection.
#[inline(always)]
pub fn opened_by_peer(sk: *mut bpf_sock) -> bool {
    let p = storage(sk, false);
    // SAFETY: this socket's storage when non-null.
    !p.is_null() && unsafe { (*p).flags } & SK_PASSIVE != 0
}

/// Marks a listener that lets a connection in: the sockets it accepts inherit the mark.
#[inline(always)]
pub fn mark_listener(sk: *mut bpf_sock) {
    let p = storage(sk, true);
    if !p.is_null() {
        // SAFETY: this socket's storage.
        unsafe { (*p).flags |= SK_PASSIVE };
    }
}

/// Clears the mark of a TCP socket that connects (one storage lookup; nothing is created).
#[inline(always)]
pub fn clear_on_connect(ctx: &SockAddrContext) {
    // SAFETY: the context of a sock_addr program: its socket is a full socket.
    let (sk, protocol) = unsafe { ((*ctx.sock_addr).__bindgen_anon_1.sk, (*ctx.sock_addr).protocol) };
    if protocol != IPPROTO_TCP || sk.is_null() {
        return;
    }
    let p = storage(sk, false);
    if !p.is_null() {
        // SAFETY: this socket's storage.
        unsafe { (*p).flags &= !SK_PASSIVE };
    }
}
