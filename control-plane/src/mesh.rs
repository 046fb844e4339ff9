//! Mesh identity: the control plane, not the node, decides what the WireGuard mesh believes
//! about a node.
//!
//! - Tunnel addresses come from a per-region pool (`--wg-pool REGION=CIDR`, one host address per
//!   pool at enrollment) or are pinned by an operator; they are the only `allowed_ips` signed
//!   into peers' bundles. A node may report them (or a part of them), never others.
//! - The WireGuard public key is bound at enrollment (or at the first report that carries one),
//!   unique in the fleet; a different key is refused until an operator rotates it.
//! - The endpoint must be an `IP:PORT` the node may claim: inside one of its region's
//!   `--wg-endpoint-cidr REGION=CIDR`, or, for a region without such rules, the address the node
//!   connects from.
//!
//! Everything here is pure; the handlers do the storage, the audit record and the alert.

use std::net::{IpAddr, SocketAddr};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ipnet::IpNet;
use ringfence_proto::api::WireGuardInfo;

/// `REGION=CIDR` rules (`*` for every region).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MeshRules {
    /// Address pools.
    pub pools: Vec<(String, IpNet)>,
    /// Where endpoints may be.
    pub endpoints: Vec<(String, IpNet)>,
}

/// Parses `REGION=CIDR` items of `flag`, pushing every problem.
fn region_nets(flag: &str, items: &[String], errors: &mut Vec<String>) -> Vec<(String, IpNet)> {
    let mut out = Vec::new();
    for item in items {
        match item.split_once('=').map(|(r, c)| (r.trim(), c.trim().parse::<IpNet>())) {
            Some((region, Ok(net))) if !region.is_empty() && net.trunc() == net => {
                out.push((region.to_owned(), net))
            }
            Some((_, Ok(net))) if net.trunc() != net => {
                errors.push(format!("--{flag} {item:?}: host bits set; did you mean {}?", net.trunc()))
            }
            _ => errors.push(format!("--{flag} {item:?}: expected REGION=CIDR, e.g. eu-west=10.77.0.0/16")),
        }
    }
    out
}

fn applies(rule_region: &str, region: &str) -> bool {
    rule_region == "*" || rule_region == region
}

impl MeshRules {
    /// Parses `--wg-pool` and `--wg-endpoint-cidr`.
    pub fn parse(pools: &[String], endpoints: &[String], errors: &mut Vec<String>) -> MeshRules {
        let pools = region_nets("wg-pool", pools, errors);
        for (i, (r, a)) in pools.iter().enumerate() {
            if pools[..i].iter().any(|(_, b)| a.contains(b) || b.contains(a)) {
                errors.push(format!("--wg-pool {r}={a}: overlaps another pool"));
            }
        }
        MeshRules { pools, endpoints: region_nets("wg-endpoint-cidr", endpoints, errors) }
    }

    /// The pools of a region.
    pub fn pools_for<'a>(&'a self, region: &'a str) -> impl Iterator<Item = IpNet> + 'a {
        self.pools.iter().filter(move |(r, _)| applies(r, region)).map(|(_, n)| *n)
    }

    /// Whether a node of `region`, connecting from `source`, may claim `endpoint`.
    fn check_endpoint(&self, region: &str, endpoint: &str, source: IpAddr) -> Result<(), String> {
        let Ok(addr) = endpoint.parse::<SocketAddr>() else {
            return Err(format!(
                "endpoint {endpoint:?}: expected IP:PORT (host names cannot be checked against the region's rules)"
            ));
        };
        if addr.port() == 0 {
            return Err(format!("endpoint {endpoint:?}: port 0"));
        }
        let ip = canonical(addr.ip());
        let rules: Vec<IpNet> =
            self.endpoints.iter().filter(|(r, _)| applies(r, region)).map(|(_, n)| *n).collect();
        if rules.is_empty() {
            if ip == canonical(source) {
                return Ok(());
            }
            return Err(format!(
                "endpoint {endpoint:?}: region {region} has no --wg-endpoint-cidr rule, so a node may only claim the address it connects from ({source})"
            ));
        }
        if rules.iter().any(|n| n.contains(&ip)) {
            return Ok(());
        }
        let list: Vec<String> = rules.iter().map(IpNet::to_string).collect();
        Err(format!(
            "endpoint {endpoint:?}: not in region {region}'s endpoint networks ({})",
            list.join(", ")
        ))
    }
}

/// IPv4-mapped IPv6 as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Whether `key` is a WireGuard public key: base64 of 32 bytes.
pub fn valid_key(key: &str) -> bool {
    STANDARD.decode(key.trim()).is_ok_and(|b| b.len() == 32)
}

/// The first host address of `pool` not inside any of `taken` (a /32 or /128). IPv4 pools skip
/// their network and broadcast addresses, IPv6 pools their subnet-router anycast address.
pub fn allocate(pool: IpNet, taken: &[IpNet]) -> Option<IpNet> {
    let free = |ip: IpAddr| !taken.iter().any(|t| t.contains(&ip));
    let host = |ip: IpAddr| IpNet::new(ip, if ip.is_ipv4() { 32 } else { 128 }).expect("host prefix");
    match pool {
        IpNet::V4(p) if p.prefix_len() < 31 => p.hosts().map(IpAddr::V4).find(|ip| free(*ip)).map(host),
        // IPv6: skip the subnet-router anycast address; walk at most 2^20 addresses.
        IpNet::V6(p) if p.prefix_len() < 127 => {
            p.hosts().skip(1).take(1 << 20).map(IpAddr::V6).find(|ip| free(*ip)).map(host)
        }
        other => other.hosts().find(|ip| free(*ip)).map(host),
    }
}

/// What the node's binding is now.
#[derive(Clone, Copy, Debug)]
pub struct Binding<'a> {
    /// The node's region.
    pub region: &'a str,
    /// The bound key, if one is bound.
    pub key: Option<&'a str>,
    /// The node's tunnel addresses.
    pub addresses: &'a [String],
    /// The address the request came from.
    pub source: IpAddr,
}

/// Checks a WireGuard claim against the node's binding and the rules; the accepted identity
/// (bound key, the claimed endpoint, the node's tunnel addresses), or every problem. Key
/// uniqueness across nodes needs the database and is checked by the caller.
pub fn check_claim(
    rules: &MeshRules,
    binding: Binding<'_>,
    claim: &WireGuardInfo,
) -> Result<WireGuardInfo, Vec<String>> {
    let mut problems = Vec::new();
    let key = claim.public_key.trim();
    if !valid_key(key) {
        problems.push(format!(
            "public_key {:?}: not a WireGuard public key (32 bytes, base64)",
            claim.public_key
        ));
    } else if let Some(bound) = binding.key.filter(|b| *b != key) {
        problems.push(format!(
            "public_key {key}: this node's key is {bound}; a new key needs an operator's rotation (`ringfence nodes rotate-key NODE --public-key KEY`)"
        ));
    }
    if let Some(endpoint) = &claim.endpoint {
        if let Err(e) = rules.check_endpoint(binding.region, endpoint, binding.source) {
            problems.push(e);
        }
    }
    let bound: Vec<IpNet> = binding.addresses.iter().filter_map(|a| a.parse().ok()).collect();
    for claimed in &claim.allowed_ips {
        match claimed.parse::<IpNet>() {
            Ok(net) if bound.iter().any(|b| b.contains(&net)) => {}
            Ok(_) if bound.is_empty() => problems.push(format!(
                "allowed_ips {claimed}: no tunnel address is allocated or pinned for this node (configure --wg-pool for region {} or `ringfence nodes pin-address`)",
                binding.region
            )),
            Ok(_) => problems.push(format!(
                "allowed_ips {claimed}: not this node's tunnel address ({})",
                binding.addresses.join(", ")
            )),
            Err(_) => problems.push(format!("allowed_ips {claimed:?}: not a CIDR")),
        }
    }
    if problems.is_empty() {
        Ok(WireGuardInfo {
            public_key: key.to_owned(),
            endpoint: claim.endpoint.clone(),
            allowed_ips: binding.addresses.to_vec(),
        })
    } else {
        Err(problems)
    }
}

/// Whether `nets` (CIDR texts) overlap any of `others`.
pub fn overlapping(nets: &[IpNet], others: &[IpNet]) -> Option<(IpNet, IpNet)> {
    nets.iter()
        .flat_map(|a| others.iter().map(move |b| (*a, *b)))
        .find(|(a, b)| a.contains(b) || b.contains(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> String {
        STANDARD.encode([n; 32])
    }

    fn rules() -> MeshRules {
        let mut errors = Vec::new();
        let r = MeshRules::parse(
            &["eu=10.77.0.0/24".into(), "*=fd00:77::/64".into()],
            &["eu=192.0.2.0/24".into()],
            &mut errors,
        );
        assert!(errors.is_empty(), "{errors:?}");
        r
    }

    fn claim(k: &str, endpoint: &str, ips: &[&str]) -> WireGuardInfo {
        WireGuardInfo {
            public_key: k.into(),
            endpoint: Some(endpoint.into()),
            allowed_ips: ips.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn flags_parse_with_every_error() {
        let mut errors = Vec::new();
        MeshRules::parse(
            &["eu=10.0.0.1/8".into(), "nothing".into(), "a=10.1.0.0/16".into(), "b=10.1.2.0/24".into()],
            &["=192.0.2.0/24".into()],
            &mut errors,
        );
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors[0].contains("did you mean 10.0.0.0/8"), "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("overlaps another pool")), "{errors:?}");
    }

    #[test]
    fn allocation_skips_taken_and_special_addresses() {
        let pool: IpNet = "10.77.0.0/30".parse().unwrap();
        assert_eq!(allocate(pool, &[]), Some("10.77.0.1/32".parse().unwrap()));
        assert_eq!(allocate(pool, &["10.77.0.1/32".parse().unwrap()]), Some("10.77.0.2/32".parse().unwrap()));
        assert_eq!(allocate(pool, &["10.77.0.0/31".parse().unwrap(), "10.77.0.2/32".parse().unwrap()]), None);
        let v6: IpNet = "fd00:77::/126".parse().unwrap();
        assert_eq!(allocate(v6, &[]), Some("fd00:77::1/128".parse().unwrap()));
    }

    #[test]
    fn hijack_claims_refused() {
        let rules = rules();
        let bound = ["10.77.0.5/32".to_string()];
        let source: IpAddr = "203.0.113.9".parse().unwrap();
        let binding = Binding { region: "eu", key: Some(&key(1)), addresses: &bound, source };
        // The honest claim: accepted, signed with the bound addresses.
        let ok = check_claim(&rules, binding, &claim(&key(1), "192.0.2.5:51820", &["10.77.0.5/32"])).unwrap();
        assert_eq!(ok.allowed_ips, bound);
        // Another key, routes it does not own, an endpoint outside the region's networks.
        let bad = claim(&key(2), "198.51.100.1:51820", &["0.0.0.0/1", "128.0.0.0/1", "10.77.0.6/32"]);
        let problems = check_claim(&rules, binding, &bad).unwrap_err();
        assert_eq!(problems.len(), 5, "{problems:#?}");
        assert!(problems[0].contains("rotate-key"), "{problems:#?}");
        assert!(problems[1].contains("not in region eu's endpoint networks (192.0.2.0/24)"), "{problems:#?}");
        assert!(check_claim(&rules, binding, &claim("short", "192.0.2.5:1", &[])).is_err());
        // A region without endpoint rules: only the source address.
        let us = Binding { region: "us", key: None, addresses: &[], source };
        assert!(check_claim(&rules, us, &claim(&key(3), "203.0.113.9:51820", &[])).is_ok());
        let e = check_claim(&rules, us, &claim(&key(3), "203.0.113.10:51820", &["10.9.0.1/32"])).unwrap_err();
        assert!(e[0].contains("the address it connects from (203.0.113.9)"), "{e:?}");
        assert!(e[1].contains("no tunnel address is allocated"), "{e:?}");
        assert!(check_claim(&rules, us, &claim(&key(3), "host.example:51820", &[])).is_err());
        assert_eq!(rules.pools_for("us").collect::<Vec<_>>(), ["fd00:77::/64".parse::<IpNet>().unwrap()]);
    }
}
