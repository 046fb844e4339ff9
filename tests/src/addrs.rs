//! Lab addressing plan (documentation prefixes only).

use std::net::IpAddr;

/// IPv4 "internet" hosts owned by the world namespace.
pub const WORLD_V4: [&str; 3] = ["198.51.100.10", "198.51.100.20", "203.0.113.5"];
/// IPv6 "internet" hosts owned by the world namespace.
pub const WORLD_V6: [&str; 2] = ["2001:db8:10::10", "2001:db8:20::10"];
/// Node end of the veth (IPv4).
pub const NODE_V4: &str = "192.0.2.1";
/// Node end of the veth (IPv6).
pub const NODE_V6: &str = "2001:db8:1::1";
/// World end of the veth, the node's default gateway (IPv4).
pub const WORLD_GW_V4: &str = "192.0.2.2";
/// World end of the veth, the node's default gateway (IPv6).
pub const WORLD_GW_V6: &str = "2001:db8:1::2";

/// True for addresses in the documentation prefixes 192.0.2.0/24,
/// 198.51.100.0/24, 203.0.113.0/24 and 2001:db8::/32.
pub fn is_documentation_addr(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            matches!((o[0], o[1], o[2]), (192, 0, 2) | (198, 51, 100) | (203, 0, 113))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            s[0] == 0x2001 && s[1] == 0x0db8
        }
    }
}
