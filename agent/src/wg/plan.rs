//! Reconciliation as a pure function: what the device and the routing table have, what the peer
//! list wants, and the smallest set of changes between them (no teardown).
use std::collections::{BTreeSet, HashMap};

use ipnet::IpNet;
use wireguard_control::Key;

use super::peers::Peer;

/// A peer as the device reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePeer {
    pub public_key: Key,
    pub endpoint: Option<std::net::SocketAddr>,
    pub allowed_ips: Vec<IpNet>,
    pub persistent_keepalive: Option<u16>,
    /// The last completed handshake (`None`: none yet); not part of the plan.
    pub last_handshake: Option<std::time::SystemTime>,
}

/// Changes that turn the current state into the desired one.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Peers to remove from the device.
    pub remove: Vec<Key>,
    /// New peers.
    pub add: Vec<Peer>,
    /// Existing peers whose endpoint, allowed IPs or keepalive differ (allowed IPs replaced).
    pub update: Vec<Peer>,
    /// Routes (through the interface) to add and to delete.
    pub routes_add: Vec<IpNet>,
    pub routes_del: Vec<IpNet>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self == &Plan::default()
    }
}

fn set(nets: &[IpNet]) -> BTreeSet<IpNet> {
    nets.iter().map(IpNet::trunc).collect()
}

fn differs(want: &Peer, have: &DevicePeer) -> bool {
    // No endpoint wanted: whatever the peer roamed from is fine.
    let endpoint = want.endpoint.is_some() && want.endpoint != have.endpoint;
    endpoint
        || set(&want.allowed_ips) != set(&have.allowed_ips)
        || want.persistent_keepalive != have.persistent_keepalive
}

/// Plans the changes. `routes` are the routes the agent owns on the interface now.
pub fn plan(desired: &[Peer], device: &[DevicePeer], routes: &[IpNet]) -> Plan {
    let have: HashMap<&[u8; 32], &DevicePeer> = device.iter().map(|p| (&p.public_key.0, p)).collect();
    let want: HashMap<&[u8; 32], &Peer> = desired.iter().map(|p| (&p.public_key.0, p)).collect();
    let mut plan = Plan::default();
    for p in device {
        if !want.contains_key(&p.public_key.0) {
            plan.remove.push(p.public_key.clone());
        }
    }
    for p in desired {
        match have.get(&p.public_key.0) {
            None => plan.add.push(p.clone()),
            Some(h) if differs(p, h) => plan.update.push(p.clone()),
            Some(_) => {}
        }
    }
    let want_routes: BTreeSet<IpNet> = desired.iter().flat_map(|p| set(&p.allowed_ips)).collect();
    let have_routes = set(routes);
    plan.routes_add = want_routes.difference(&have_routes).copied().collect();
    plan.routes_del = have_routes.difference(&want_routes).copied().collect();
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn peer(n: u8, nets: &[&str]) -> Peer {
        Peer {
            public_key: Key([n; 32]),
            endpoint: Some(format!("192.0.2.{n}:51820").parse().unwrap()),
            allowed_ips: nets.iter().map(|s| net(s)).collect(),
            region: Some("eu-west".into()),
            persistent_keepalive: None,
        }
    }

    fn on_device(p: &Peer) -> DevicePeer {
        DevicePeer {
            public_key: p.public_key.clone(),
            endpoint: p.endpoint,
            allowed_ips: p.allowed_ips.clone(),
            persistent_keepalive: p.persistent_keepalive,
            last_handshake: None,
        }
    }

    #[test]
    fn fresh_device_gets_every_peer_and_route() {
        let want = [peer(2, &["198.51.100.2/32"]), peer(3, &["198.51.100.64/26", "2001:db8:3::/48"])];
        let p = plan(&want, &[], &[]);
        assert_eq!(p.add, want.to_vec());
        assert!(p.remove.is_empty() && p.update.is_empty() && p.routes_del.is_empty());
        assert_eq!(p.routes_add.len(), 3);
    }

    #[test]
    fn in_sync_is_empty_and_region_alone_changes_nothing() {
        let want = [peer(2, &["198.51.100.2/32"])];
        let mut dev = on_device(&want[0]);
        dev.allowed_ips.reverse();
        let mut other_region = want[0].clone();
        other_region.region = None;
        assert!(plan(&[other_region], &[dev], &[net("198.51.100.2/32")]).is_empty());
    }

    #[test]
    fn removed_added_and_changed_peers_and_routes() {
        let old = [peer(2, &["198.51.100.2/32"]), peer(3, &["198.51.100.3/32"])];
        let dev: Vec<_> = old.iter().map(on_device).collect();
        let routes = [net("198.51.100.2/32"), net("198.51.100.3/32"), net("203.0.113.0/24")];
        let mut moved = peer(3, &["198.51.100.3/32", "198.51.100.128/25"]);
        moved.endpoint = Some("192.0.2.33:51820".parse().unwrap());
        let want = [moved.clone(), peer(4, &["198.51.100.4/32"])];
        let p = plan(&want, &dev, &routes);
        assert_eq!(p.remove, vec![Key([2; 32])]);
        assert_eq!(p.update, vec![moved]);
        assert_eq!(p.add, vec![want[1].clone()]);
        assert_eq!(p.routes_add, vec![net("198.51.100.4/32"), net("198.51.100.128/25")]);
        assert_eq!(p.routes_del, vec![net("198.51.100.2/32"), net("203.0.113.0/24")]);
    }

    #[test]
    fn roaming_peer_without_configured_endpoint_is_left_alone() {
        let mut want = peer(2, &["198.51.100.2/32"]);
        want.endpoint = None;
        let mut dev = on_device(&want);
        dev.endpoint = Some("192.0.2.99:40000".parse().unwrap());
        assert!(plan(&[want], &[dev], &[net("198.51.100.2/32")]).is_empty());
    }
}
