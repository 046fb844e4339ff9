//! Compilation of the encryption requirements: the peer prefixes (always must-encrypt) and the
//! home region's prefixes (with crossBorder, everything outside must be encrypted).

use std::net::IpAddr;

use ipnet::IpNet;
use ringfence_common::{MAX_PREFIXES_V4, MAX_PREFIXES_V6};

use super::error::CompileError;
use super::geo::aggregate;
use crate::geo::GeoDb;
use crate::model::Policy;
use crate::prefix::{inside_v4_mapped, key_of, mask, net_key, normalize_net, to_bytes};

/// Prefixes of one family: (masked address bytes, prefix length), sorted.
pub(super) type PrefixSet<const N: usize> = Vec<([u8; N], u32)>;

/// Which encryption trie (for [`CompileError::TooManyEncryptionPrefixes`]).
const PEERS: &str = "peer";
const HOME: &str = "home region";

/// (masked address as an integer, prefix length) pairs.
type Keys = Vec<(u128, u32)>;

/// Splits networks into (IPv4, IPv6) keys, masked and normalized.
fn keys(nets: impl Iterator<Item = IpNet>) -> (Keys, Keys) {
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for net in nets {
        let net = normalize_net(net.trunc());
        let len = u32::from(net.prefix_len());
        match net.network() {
            IpAddr::V4(a) => v4.push((key_of(&a.octets()), len)),
            IpAddr::V6(a) => v6.push((key_of(&a.octets()), len)),
        }
    }
    (v4, v6)
}

fn finish<const N: usize>(
    mut keys: Keys,
    table: &'static str,
    merge: bool,
) -> Result<PrefixSet<N>, CompileError> {
    let width = (N * 8) as u32;
    keys.sort_unstable();
    keys.dedup();
    let keys = if merge {
        // Drop prefixes inside an earlier (containing) one: sorted by address then length, a
        // containing prefix comes first and everything up to the end of its range is inside it.
        let mut disjoint: Vec<(u128, u32, ())> = Vec::with_capacity(keys.len());
        for (addr, len) in keys {
            if let Some(&(top, top_len, ())) = disjoint.last() {
                if top_len <= len && mask(addr, top_len, width) == top {
                    continue;
                }
            }
            disjoint.push((addr, len, ()));
        }
        aggregate(disjoint, width).into_iter().map(|(a, l, ())| (a, l)).collect()
    } else {
        keys
    };
    let (family, max) = if N == 4 { (4, MAX_PREFIXES_V4) } else { (6, MAX_PREFIXES_V6) };
    if keys.len() > max as usize {
        return Err(CompileError::TooManyEncryptionPrefixes {
            table,
            family,
            count: keys.len(),
            max: max as usize,
        });
    }
    Ok(keys.into_iter().map(|(a, l)| (to_bytes(a), l)).collect())
}

/// The peer prefixes (masked, deduplicated, IPv4-mapped IPv6 as IPv4).
pub(super) fn build_peers(policy: &Policy) -> Result<(PrefixSet<4>, PrefixSet<16>), CompileError> {
    let (v4, v6) = keys(policy.peers.iter().copied());
    Ok((finish(v4, PEERS, false)?, finish(v6, PEERS, false)?))
}

/// The home region's prefixes: its CIDRs plus every database network of its countries, nested
/// prefixes dropped and sibling prefixes merged. Empty without crossBorder. `geo` is required
/// when the home region names countries (the caller checks).
pub(super) fn build_home(
    policy: &Policy,
    geo: Option<&GeoDb>,
) -> Result<(PrefixSet<4>, PrefixSet<16>), CompileError> {
    let Some(region) = policy.home_region() else {
        return Ok((Vec::new(), Vec::new()));
    };
    let (mut v4, mut v6) = keys(region.cidrs.iter().copied());
    if let (Some(db), false) = (geo, region.countries.is_empty()) {
        let home = |code: &[u8; 2]| region.countries.binary_search(code).is_ok();
        v4.extend(db.networks_v4().iter().filter(|(_, c)| home(c)).map(|(n, _)| net_key(*n)));
        v6.extend(
            db.networks_v6()
                .iter()
                // IPv4-mapped addresses are looked up as IPv4; such networks are never used.
                .filter(|(n, c)| home(c) && !inside_v4_mapped(n))
                .map(|(n, _)| net_key(*n)),
        );
    }
    Ok((finish(v4, HOME, true)?, finish(v6, HOME, true)?))
}
