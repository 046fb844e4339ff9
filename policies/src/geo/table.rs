//! Sorted, disjoint network tables: carving excluded ranges, overlaying several sources
//! (earlier wins), and binary-search lookup.

use ipnet::{Ipv4Net, Ipv6Net};

use crate::countries::CountryCode;

/// The parts of the IPv6 space that repeat IPv4 data in an IPv6 database: the IPv4 subtree
/// `::/96` and MaxMind's aliases of it, `::ffff:0:0/96` (IPv4-mapped) and `2002::/16` (6to4).
/// Sorted by address.
pub(super) const EXCLUDED_V6: [(u128, u8); 3] = [(0, 96), (0xffff_0000_0000, 96), (0x2002_u128 << 112, 16)];

/// A network of either family, seen as an inclusive range of integers.
pub(super) trait Net: Copy + Ord {
    fn range(&self) -> (u128, u128);
    fn halves(&self) -> Option<(Self, Self)>;
    fn prefix(&self) -> u8;
}

impl Net for Ipv4Net {
    fn range(&self) -> (u128, u128) {
        (u32::from(self.network()).into(), u32::from(self.broadcast()).into())
    }
    fn halves(&self) -> Option<(Self, Self)> {
        let mut it = self.subnets(self.prefix_len().checked_add(1)?).ok()?;
        Some((it.next()?, it.next()?))
    }
    fn prefix(&self) -> u8 {
        self.prefix_len()
    }
}

impl Net for Ipv6Net {
    fn range(&self) -> (u128, u128) {
        (u128::from(self.network()), u128::from(self.broadcast()))
    }
    fn halves(&self) -> Option<(Self, Self)> {
        let mut it = self.subnets(self.prefix_len().checked_add(1)?).ok()?;
        Some((it.next()?, it.next()?))
    }
    fn prefix(&self) -> u8 {
        self.prefix_len()
    }
}

/// Emits the parts of `net` not covered by `blockers` (sorted, disjoint inclusive ranges), as
/// CIDR networks in address order.
pub(super) fn carve<N: Net>(net: N, blockers: &[(u128, u128)], out: &mut impl FnMut(N)) {
    let (start, end) = net.range();
    // First blocker that ends at or after `start`: the only candidate to contain `net`.
    let i = blockers.partition_point(|&(_, e)| e < start);
    match blockers.get(i) {
        Some(&(bs, _)) if bs > end => out(net),
        None => out(net),
        Some(&(bs, be)) if bs <= start && be >= end => {}
        Some(_) => {
            if let Some((lo, hi)) = net.halves() {
                carve(lo, blockers, out);
                carve(hi, blockers, out);
            }
        }
    }
}

/// Removes [`EXCLUDED_V6`] from `net`.
pub(super) fn carve_excluded_v6(net: Ipv6Net, out: &mut impl FnMut(Ipv6Net)) {
    let blockers = EXCLUDED_V6.map(|(a, len)| {
        let n = Ipv6Net::new(a.into(), len).expect("valid excluded prefix");
        n.range()
    });
    carve(net, &blockers, out);
}

/// Combines layers of networks into one sorted, disjoint table. An address covered by several
/// layers takes the earliest layer's country; inside one layer, a network overlapping an
/// earlier-sorted one (same address, or nested) is dropped.
pub(super) fn overlay<N: Net>(layers: Vec<Vec<(N, CountryCode)>>) -> Vec<(N, CountryCode)> {
    let mut acc: Vec<(N, CountryCode)> = Vec::new();
    for mut layer in layers {
        layer.sort_by_key(|&(n, _)| n);
        let taken: Vec<(u128, u128)> = acc.iter().map(|(n, _)| n.range()).collect();
        let mut last_end: Option<u128> = None;
        for (net, code) in layer {
            let (start, end) = net.range();
            if last_end.is_some_and(|e| start <= e) {
                continue;
            }
            last_end = Some(end);
            if taken.is_empty() {
                acc.push((net, code));
            } else {
                carve(net, &taken, &mut |piece| acc.push((piece, code)));
            }
        }
        acc.sort_by_key(|&(n, _)| n);
    }
    acc
}

/// Sorted, disjoint table from arbitrary networks: the most specific network wins where they
/// overlap (longest-prefix semantics); exact duplicates keep the first.
fn normalize<N: Net>(v: Vec<(N, CountryCode)>) -> Vec<(N, CountryCode)> {
    let mut by_prefix: Vec<Vec<(N, CountryCode)>> = vec![Vec::new(); 129];
    for (n, c) in v {
        by_prefix[usize::from(n.prefix()).min(128)].push((n, c));
    }
    by_prefix.reverse();
    overlay(by_prefix.into_iter().filter(|l| !l.is_empty()).collect())
}

pub(super) fn disjoint_v4(v: Vec<(Ipv4Net, CountryCode)>) -> Vec<(Ipv4Net, CountryCode)> {
    normalize(v)
}

pub(super) fn disjoint_v6(v: Vec<(Ipv6Net, CountryCode)>) -> Vec<(Ipv6Net, CountryCode)> {
    normalize(v)
}

/// Binary search in a sorted disjoint table: the last network starting at or before the
/// address (`starts_at_or_before`), if it contains the address.
pub(super) fn find<N: Copy>(
    table: &[(N, CountryCode)],
    starts_at_or_before: impl Fn(&N) -> bool,
    contains: impl Fn(&N) -> bool,
) -> Option<(N, CountryCode)> {
    let i = table.partition_point(|(n, _)| starts_at_or_before(n));
    let &(net, code) = table.get(i.checked_sub(1)?)?;
    contains(&net).then_some((net, code))
}
