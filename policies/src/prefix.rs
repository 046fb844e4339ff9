//! Address and prefix arithmetic shared by the compiler, the evaluator, validation and the geo
//! tables: IPv4-mapped IPv6 addresses and networks as IPv4, addresses as integers (`u128`
//! holding the address in its low `width` bits, `width` 32 or 128), masks, and back to
//! network-order bytes or networks.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Converts an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) to IPv4; other addresses unchanged.
pub fn normalize_addr(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        IpAddr::V4(_) => addr,
    }
}

/// Converts a network inside `::ffff:0:0/96` to the equivalent IPv4 network
/// (`::ffff:198.51.100.0/120` -> `198.51.100.0/24`); other networks unchanged.
pub fn normalize_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.network().to_ipv4_mapped() {
            Some(v4) => {
                IpNet::V4(Ipv4Net::new(v4, v6.prefix_len() - 96).expect("prefix length is at most 32"))
            }
            None => net,
        },
        _ => net,
    }
}

/// True for a network inside `::ffff:0:0/96` (IPv4-mapped addresses only). The kernel and the
/// evaluator decide IPv4-mapped addresses as IPv4, so such IPv6 networks are never looked up.
pub(crate) fn inside_v4_mapped(net: &Ipv6Net) -> bool {
    net.prefix_len() >= 96 && net.network().to_ipv4_mapped().is_some()
}

/// Big-endian bytes to an integer.
pub(crate) fn key_of(bytes: &[u8]) -> u128 {
    bytes.iter().fold(0u128, |acc, b| (acc << 8) | u128::from(*b))
}

/// A network as (address as an integer, prefix length).
pub(crate) fn net_key(net: impl Into<IpNet>) -> (u128, u32) {
    let net = net.into();
    let key = match net.network() {
        IpAddr::V4(a) => key_of(&a.octets()),
        IpAddr::V6(a) => key_of(&a.octets()),
    };
    (key, u32::from(net.prefix_len()))
}

/// The low `N` bytes of `key` in network order (`N` = 4 or 16).
pub(crate) fn to_bytes<const N: usize>(key: u128) -> [u8; N] {
    key.to_be_bytes()[16 - N..].try_into().expect("N <= 16")
}

/// The network of `width` bits (32: IPv4, else IPv6) at `key` with prefix length `len`.
pub(crate) fn key_to_net(key: u128, len: u32, width: u32) -> IpNet {
    let addr =
        if width == 32 { IpAddr::from((key as u32).to_be_bytes()) } else { IpAddr::from(key.to_be_bytes()) };
    IpNet::new(addr, len as u8).expect("valid prefix length")
}

/// `addr` (the low `width` bits are the address) with all but the first `len` bits cleared.
pub(crate) fn mask(addr: u128, len: u32, width: u32) -> u128 {
    if len == 0 {
        0
    } else {
        let keep = (!0u128 << (128 - len)) >> (128 - width);
        addr & keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_clears_host_bits() {
        assert_eq!(mask(0x0A01_0203, 8, 32), 0x0A00_0000);
        assert_eq!(mask(0x0A01_0203, 0, 32), 0);
        assert_eq!(mask(0x0A01_0203, 32, 32), 0x0A01_0203);
        assert_eq!(mask(u128::MAX, 128, 128), u128::MAX);
        assert_eq!(mask(u128::MAX, 1, 128), 1u128 << 127);
    }
}
