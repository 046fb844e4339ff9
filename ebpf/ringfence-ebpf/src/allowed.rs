//! The backstop's verdict cache (`RF_ALLOWED`): destinations a policy table allowed, noted by
//! the connect/sendmsg hooks and by the backstop's own verdict, read on the backstop's fast path.
//! Keyed by table and destination rather than by socket, so a connect() costs a lookup (and a
//! write the first time) instead of a socket storage allocation; a stale entry (the policy was
//! reloaded) does not match the table's generation and an evicted one costs a full verdict.
use ringfence_common::AllowedKey;

use crate::{maps::RF_ALLOWED, verdict::Active};

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
    let _ = RF_ALLOWED.insert(key, &a.cfg.generation, 0);
}

/// Whether `key` is noted as allowed under the table's current generation.
#[inline(always)]
pub fn covers(a: &Active, key: &AllowedKey) -> bool {
    // SAFETY: a value of the map, copied at once.
    unsafe { RF_ALLOWED.get(key) }.is_some_and(|g| *g == a.cfg.generation)
}
