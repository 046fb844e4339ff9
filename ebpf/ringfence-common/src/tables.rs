//! Many policies in one set of maps: every verdict table (CIDR tries, geo tries, match lists,
//! must-encrypt and home-region sets, settings) is keyed by a *table id* that names a policy,
//! one of its two slots and a direction.
//!
//! - A workload cgroup maps to a policy index ([`crate::WORKLOADS_MAP`]); a cgroup without an
//!   entry takes the entry of its nearest ancestor that has one, else policy
//!   [`DEFAULT_POLICY`] (the node default; with `--cgroup` it is the only one).
//! - Each policy has two slots and [`crate::ACTIVE_MAP`] holds, per policy, the slot the
//!   programs read: the agent fills the other slot, then flips that one 4-byte value, so a
//!   policy's change is atomic and never touches another policy's tables.
//! - Each slot has an egress and an ingress table ([`DIR_EGRESS`], [`DIR_INGRESS`]).
//!
//! LPM trie keys carry the table id in front of the address (big-endian), so a lookup of
//! `TABLE_BITS + address bits` stays inside one table; entries store the address prefix length.

/// Policies per node (index 0 is the node default).
pub const MAX_POLICIES: u32 = 256;
/// The node's default policy: governs every cgroup under the root that no workload entry covers.
pub const DEFAULT_POLICY: u32 = 0;
/// Reserved for `ringfence-agent selftest exfil`'s throwaway workload (workload policies use
/// 1 to `SELFTEST_POLICY - 1`).
pub const SELFTEST_POLICY: u32 = MAX_POLICIES - 1;
/// Table directions.
pub const DIR_EGRESS: u32 = 0;
pub const DIR_INGRESS: u32 = 1;
/// Table ids: policy, slot, direction.
pub const MAX_TABLES: u32 = MAX_POLICIES * 4;
/// Bits of a trie key taken by the table id.
pub const TABLE_BITS: u32 = 32;

/// The table of `policy`'s `slot` (0 or 1) for direction `dir`.
#[inline(always)]
pub const fn table_id(policy: u32, slot: u32, dir: u32) -> u32 {
    (policy << 2) | ((slot & 1) << 1) | (dir & 1)
}

/// Splits a table id into (policy, slot, direction).
pub const fn table_parts(table: u32) -> (u32, u32, u32) {
    (table >> 2, (table >> 1) & 1, table & 1)
}

/// An IPv4 trie key: table id (big-endian), then the address.
#[inline(always)]
pub const fn key4(table: u32, a: [u8; 4]) -> [u8; 8] {
    let t = table.to_be_bytes();
    [t[0], t[1], t[2], t[3], a[0], a[1], a[2], a[3]]
}

/// An IPv6 trie key: table id (big-endian), then the address.
#[inline(always)]
pub const fn key6(table: u32, a: [u8; 16]) -> [u8; 20] {
    let t = table.to_be_bytes();
    [
        t[0], t[1], t[2], t[3], a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11],
        a[12], a[13], a[14], a[15],
    ]
}

/// The table id of a trie key (the first four bytes).
pub const fn key_table(key: &[u8]) -> u32 {
    u32::from_be_bytes([key[0], key[1], key[2], key[3]])
}

/// Key of [`crate::LIST_MAP`]: a table's match list.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct ListKey {
    pub table: u32,
    pub list: u32,
}

/// [`crate::WORKLOAD_STATE_MAP`]: how many workload entries exist (0 lets every program skip the
/// cgroup walk: everything is the default policy) and an epoch the agent bumps after every
/// change, which invalidates the programs' per-cgroup cache.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct WorkloadState {
    pub epoch: u32,
    pub count: u32,
}

/// Value of [`crate::CGCACHE_MAP`]: a cgroup's resolved policy under an epoch.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct CgPolicy {
    pub policy: u32,
    pub epoch: u32,
    /// The workload: the cgroup id of the nearest ancestor with a workload entry (0: none, the
    /// node default's cgroups), which exfiltration budgets are counted for.
    pub workload: u64,
}

#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::ListKey {}
    unsafe impl aya::Pod for super::WorkloadState {}
    unsafe impl aya::Pod for super::CgPolicy {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_ids_round_trip() {
        for policy in [0, 1, 7, MAX_POLICIES - 1] {
            for slot in 0..2 {
                for dir in 0..2 {
                    let t = table_id(policy, slot, dir);
                    assert!(t < MAX_TABLES);
                    assert_eq!(table_parts(t), (policy, slot, dir));
                }
            }
        }
        let k = key4(table_id(3, 1, 0), [192, 0, 2, 1]);
        assert_eq!(key_table(&k), 14);
        assert_eq!(&k[4..], &[192, 0, 2, 1]);
        assert_eq!(key_table(&key6(5, [0x20; 16])), 5);
    }
}
