//! `sockops`: marks connections the remote side opened (accepted by a listener of the enforced
//! cgroup), so the backstop treats their packets as replies, as the connect-time policy does.
use aya_ebpf::{
    bindings::BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB, helpers::generated::bpf_sk_storage_get, macros::sock_ops,
    programs::SockOpsContext,
};
use ringfence_common::{SkVerdict, SK_PASSIVE};

use crate::maps::RF_SKCACHE;

#[sock_ops]
pub fn rf_sockops(ctx: SockOpsContext) -> u32 {
    if ctx.op() == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB {
        mark_passive(&ctx);
    }
    1
}

#[inline(always)]
fn mark_passive(ctx: &SockOpsContext) {
    // SAFETY: the context's socket pointer (checked for null) and the storage map.
    unsafe {
        let sk = (*ctx.ops).__bindgen_anon_2.sk;
        if sk.is_null() {
            return;
        }
        let mut fresh = SkVerdict::default();
        let p = bpf_sk_storage_get(
            &RF_SKCACHE as *const _ as *mut _,
            sk.cast(),
            (&mut fresh as *mut SkVerdict).cast(),
            aya_ebpf::bindings::BPF_SK_STORAGE_GET_F_CREATE as u64,
        ) as *mut SkVerdict;
        if !p.is_null() {
            (*p).flags |= SK_PASSIVE;
        }
    }
}
