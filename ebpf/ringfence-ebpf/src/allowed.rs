//! The backstop's verdict cache (`RF_ALLOWED`): destinations a policy table allowed, noted by
//! the connect/sendmsg hooks and by the backstop's own verdict, read on the backstop's fast path.
//! Keyed by table and destination rather than by socket, so a connect() costs a lookup (and a
//! write the first time) instead of a socket storage allocation; a stale entry (the policy was
//! reloaded) does not match the table's generation and an evicted one costs a full verdict.
//! An allow through an address learned from DNS is noted like any other, and the packets of a
//! cached destination keep its learned address alive (renewed at most every half TTL floor), so
//! a flow outlives its answer's TTL across a reload or an eviction; a flow idle for longer than
//! half the floor may find its address expired when next decided in full.
use aya_ebpf::helpers::bpf_ktime_get_ns;
use ringfence_common::{AllowedKey, AllowedValue, CONFIG_DNS};

use crate::{active::Active, dns::keep_learned, maps::RF_ALLOWED};

const NS: u64 = 1_000_000_000;

/// The cache key of a destination under `a`'s table.
#[inline(always)]
pub fn key(a: &Active, family: u32, proto: u32, port: u16, daddr: [u8; 16]) -> AllowedKey {
    AllowedKey { table: a.table, family, proto, port: port as u32, daddr }
}

/// Notes that `a`'s table allows `key` (no write when it is already noted under this generation).
#[inline(always)]
pub fn note(a: &Active, key: &AllowedKey) {
    if covers(a, key) {
        return;
    }
    let value = AllowedValue { generation: a.cfg.generation, _pad: 0, renew_ns: 0 };
    let _ = RF_ALLOWED.insert(key, &value, 0);
}

/// Whether `key` is noted as allowed under the table's current generation (for a policy that
/// learns names, a hit may renew the destination's learned address).
#[inline(always)]
pub fn covers(a: &Active, key: &AllowedKey) -> bool {
    let Some(v) = RF_ALLOWED.get_ptr_mut(key) else { return false };
    // SAFETY: a value pointer of the map, read once.
    if unsafe { (*v).generation } != a.cfg.generation {
        return false;
    }
    if a.cfg.flags & CONFIG_DNS != 0 && a.cfg.ttl_floor != 0 {
        renew(a, key, v);
    }
    true
}

/// Renews the learned address of a cached destination when its time has come. Not inlined: its
/// frame is not on the backstop's stack.
#[inline(never)]
fn renew(a: &Active, key: &AllowedKey, v: *mut AllowedValue) {
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    // SAFETY: a value pointer of the map; racing CPUs write the same kind of value.
    unsafe {
        if now < (*v).renew_ns {
            return;
        }
        (*v).renew_ns = now + a.cfg.ttl_floor as u64 * (NS / 2);
    }
    keep_learned(a.table, key.family, &key.daddr, a.cfg.ttl_floor);
}
