//! Mesh peers: the model the agent reconciles the device against, read from the peers file
//! (JSON, `--wg-peers`) or from a control-plane bundle ([`from_bundle`]); both are validated
//! alike.
//!
//! ```json
//! {"peers":[{"publicKey":"…","endpoint":"192.0.2.2:51820","allowedIps":["198.51.100.64/26"],
//!            "region":"eu-west","persistentKeepalive":25}]}
//! ```
use std::{collections::HashMap, net::SocketAddr, path::Path};

use ipnet::IpNet;
use serde::Deserialize;
use wireguard_control::Key;

/// One mesh peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub public_key: Key,
    /// Where to send to; `None` waits for the peer to reach us (it roams).
    pub endpoint: Option<SocketAddr>,
    /// Tunnel destinations routed to this peer (normalised: no host bits).
    pub allowed_ips: Vec<IpNet>,
    /// Informational (logs, later policy); not given to WireGuard.
    pub region: Option<String>,
    pub persistent_keepalive: Option<u16>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    peers: Vec<RawPeer>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPeer {
    public_key: String,
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default)]
    allowed_ips: Vec<String>,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    persistent_keepalive: Option<u16>,
}

/// Parses a peers document; every problem is reported, each naming the peer.
pub fn parse(text: &str) -> Result<Vec<Peer>, Vec<String>> {
    let raw: RawFile = serde_json::from_str(text).map_err(|e| vec![e.to_string()])?;
    validate(raw.peers)
}

/// A bundle's peers, validated like a peers file (messages name `peers[i]`).
pub fn from_bundle(peers: &[ringfence_proto::bundle::Peer]) -> Result<Vec<Peer>, Vec<String>> {
    validate(
        peers
            .iter()
            .map(|p| RawPeer {
                public_key: p.public_key.clone(),
                endpoint: p.endpoint.clone(),
                allowed_ips: p.allowed_ips.clone(),
                region: Some(p.region.clone()),
                persistent_keepalive: None,
            })
            .collect(),
    )
}

/// The addresses of `peers`: their endpoints' hosts and the networks routed to them through the
/// tunnel.
pub fn addresses(peers: &[Peer]) -> Vec<IpNet> {
    let mut out = Vec::new();
    for p in peers {
        out.extend(p.endpoint.map(|e| IpNet::from(e.ip())));
        out.extend(p.allowed_ips.iter().copied());
    }
    out
}

fn validate(raw: Vec<RawPeer>) -> Result<Vec<Peer>, Vec<String>> {
    let mut errors = Vec::new();
    let mut peers = Vec::new();
    let mut seen_keys: HashMap<[u8; 32], usize> = HashMap::new();
    let mut seen_nets: Vec<(IpNet, usize)> = Vec::new();
    for (i, p) in raw.into_iter().enumerate() {
        let at = format!("peers[{i}]");
        let key = Key::from_base64(p.public_key.trim());
        let key = match key {
            Ok(k) => {
                if let Some(j) = seen_keys.insert(k.0, i) {
                    errors.push(format!("{at}.publicKey: same key as peers[{j}]"));
                }
                Some(k)
            }
            Err(_) => {
                errors.push(format!(
                    "{at}.publicKey {:?}: not a WireGuard public key (32 bytes, base64)",
                    p.public_key
                ));
                None
            }
        };
        let endpoint = match p.endpoint.as_deref().map(str::parse::<SocketAddr>) {
            None => None,
            Some(Ok(e)) if e.port() != 0 => Some(e),
            Some(_) => {
                errors.push(format!(
                    "{at}.endpoint {:?}: expected ADDRESS:PORT (e.g. 192.0.2.2:51820 or [2001:db8::2]:51820)",
                    p.endpoint.unwrap_or_default()
                ));
                None
            }
        };
        let mut allowed = Vec::new();
        for (n, s) in p.allowed_ips.iter().enumerate() {
            match s.parse::<IpNet>() {
                Ok(net) if net.prefix_len() == 0 => errors.push(format!(
                    "{at}.allowedIps[{n}] {s:?}: a default route through the mesh is not supported"
                )),
                Ok(net) if net.trunc() != net => errors.push(format!(
                    "{at}.allowedIps[{n}] {s:?}: host bits set; did you mean {}?",
                    net.trunc()
                )),
                Ok(net) => {
                    if let Some((other, j)) =
                        seen_nets.iter().find(|(o, _)| o.contains(&net) || net.contains(o))
                    {
                        errors.push(format!("{at}.allowedIps[{n}] {net} overlaps {other} of peers[{j}]"));
                    }
                    seen_nets.push((net, i));
                    allowed.push(net);
                }
                Err(_) => {
                    errors.push(format!("{at}.allowedIps[{n}] {s:?}: not a CIDR (e.g. 198.51.100.64/26)"))
                }
            }
        }
        if p.region.as_deref().is_some_and(|r| r.trim().is_empty()) {
            errors.push(format!("{at}.region: empty"));
        }
        if let Some(public_key) = key {
            peers.push(Peer {
                public_key,
                endpoint,
                allowed_ips: allowed,
                region: p.region,
                persistent_keepalive: p.persistent_keepalive.filter(|&k| k > 0),
            });
        }
    }
    if errors.is_empty() {
        Ok(peers)
    } else {
        Err(errors)
    }
}

/// Reads and parses a peers file; messages name the file.
pub fn load(path: &Path) -> Result<Vec<Peer>, Vec<String>> {
    let text =
        std::fs::read_to_string(path).map_err(|e| vec![format!("--wg-peers {}: {e}", path.display())])?;
    parse(&text).map_err(|errs| errs.into_iter().map(|e| format!("{}: {e}", path.display())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> String {
        Key([n; 32]).to_base64()
    }

    #[test]
    fn parses_the_documented_format() {
        let text = format!(
            r#"{{"peers":[{{"publicKey":"{}","endpoint":"192.0.2.2:51820","allowedIps":["198.51.100.64/26","2001:db8:5::/48"],"region":"eu-west"}}]}}"#,
            key(1)
        );
        let peers = parse(&text).unwrap();
        assert_eq!(peers.len(), 1);
        assert_eq!(peers[0].public_key, Key([1; 32]));
        assert_eq!(peers[0].endpoint, Some("192.0.2.2:51820".parse().unwrap()));
        assert_eq!(peers[0].allowed_ips.len(), 2);
        assert_eq!(peers[0].region.as_deref(), Some("eu-west"));
        assert!(parse(r#"{"peers":[]}"#).unwrap().is_empty());
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err =
            parse(&format!(r#"{{"peers":[{{"publicKey":"{}","allowedIP":[]}}]}}"#, key(1))).unwrap_err();
        assert!(err[0].contains("unknown field `allowedIP`"), "{err:?}");
        assert!(parse(r#"{"peers":[],"extra":1}"#).is_err());
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = format!(
            r#"{{"peers":[
              {{"publicKey":"short","endpoint":"nowhere","allowedIps":["198.51.100.1/24","0.0.0.0/0","x"]}},
              {{"publicKey":"{k}","allowedIps":["198.51.100.0/25"],"region":" "}},
              {{"publicKey":"{k}","allowedIps":["198.51.100.0/26"]}}]}}"#,
            k = key(2)
        );
        let errs = parse(&text).unwrap_err();
        for needle in [
            "peers[0].publicKey \"short\"",
            "peers[0].endpoint \"nowhere\"",
            "did you mean 198.51.100.0/24",
            "default route",
            "\"x\": not a CIDR",
            "peers[1].region: empty",
            "peers[2].publicKey: same key as peers[1]",
            "198.51.100.0/26 overlaps 198.51.100.0/25 of peers[1]",
        ] {
            assert!(errs.iter().any(|e| e.contains(needle)), "missing {needle:?} in {errs:#?}");
        }
    }
}
