//! Compilation of the encryption requirements: the peer prefixes (always must-encrypt) and the
//! home region's prefixes (with crossBorder, everything outside must be encrypted).

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use ringfence_common::{MAX_PREFIXES_V4, MAX_PREFIXES_V6};

use super::error::CompileError;
use crate::geo::GeoDb;
use crate::model::Policy;
use crate::prefix::{inside_v4_mapped, net_key, normalize_net, to_bytes};

/// Prefixes of one family: (masked address bytes, prefix length), sorted.
pub(super) type PrefixSet<const N: usize> = Vec<([u8; N], u32)>;

/// Which encryption trie (for [`CompileError::TooManyEncryptionPrefixes`]).
const PEERS: &str = "peer";
const HOME: &str = "home region";

/// Splits networks into IPv4 and IPv6, host bits cleared, IPv4-mapped IPv6 networks as IPv4.
pub(super) fn split(nets: impl Iterator<Item = IpNet>) -> (Vec<Ipv4Net>, Vec<Ipv6Net>) {
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for net in nets {
        match normalize_net(net.trunc()) {
            IpNet::V4(n) => v4.push(n),
            IpNet::V6(n) => v6.push(n),
        }
    }
    (v4, v6)
}

/// The trie entries of `nets` (one family, `N` address bytes): sorted by address then length,
/// deduplicated, at most the kernel's limit.
pub(super) fn finish<const N: usize>(
    nets: Vec<impl Into<IpNet>>,
    table: &'static str,
) -> Result<PrefixSet<N>, CompileError> {
    let mut keys: Vec<(u128, u32)> = nets.into_iter().map(net_key).collect();
    keys.sort_unstable();
    keys.dedup();
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
    let (v4, v6) = split(policy.peers.iter().copied());
    Ok((finish(v4, PEERS)?, finish(v6, PEERS)?))
}

/// The home region's prefixes: its CIDRs plus every database network of its countries,
/// aggregated (ipnet's `aggregate`: the fewest prefixes covering the same addresses, so nested
/// prefixes are dropped and adjacent ones merged). Empty without crossBorder. `geo` is
/// required when the home region names countries (the caller checks).
pub(super) fn build_home(
    policy: &Policy,
    geo: Option<&GeoDb>,
) -> Result<(PrefixSet<4>, PrefixSet<16>), CompileError> {
    let Some(region) = policy.home_region() else {
        return Ok((Vec::new(), Vec::new()));
    };
    let (mut v4, mut v6) = split(region.cidrs.iter().copied());
    if let (Some(db), false) = (geo, region.countries.is_empty()) {
        let home = |code: &[u8; 2]| region.countries.binary_search(code).is_ok();
        v4.extend(db.networks_v4().iter().filter(|(_, c)| home(c)).map(|(n, _)| *n));
        v6.extend(
            db.networks_v6()
                .iter()
                // IPv4-mapped addresses are looked up as IPv4; such networks are never used.
                .filter(|(n, c)| home(c) && !inside_v4_mapped(n))
                .map(|(n, _)| *n),
        );
    }
    Ok((finish(Ipv4Net::aggregate(&v4), HOME)?, finish(Ipv6Net::aggregate(&v6), HOME)?))
}
