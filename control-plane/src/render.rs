//! Renders a node's bundle from a [`Snapshot`]: the newest policy whose selector matches the
//! node, and as WireGuard peers the other unrevoked nodes of its region that reported a key.
//!
//! The bundle version is the newest generation among its inputs (the chosen policy, and every
//! node of the region, revoked ones included): it grows whenever the bundle's content can have
//! changed, and never for changes that do not concern the node.

use ed25519_dalek::SigningKey;
use ringfence_proto::{Bundle, Peer, SignedBundle, BUNDLE_FORMAT};

use crate::db::PolicyRow;
use crate::hub::Snapshot;

/// The policy in force for a node of this region and labels.
pub fn policy_for<'a>(
    snapshot: &'a Snapshot,
    region: &str,
    labels: &ringfence_proto::api::Labels,
) -> Option<&'a PolicyRow> {
    snapshot.policies.iter().find(|p| p.record.selector.matches(region, labels))
}

/// The version the node's bundle has in `snapshot` (0: no policy selects it, no bundle).
pub fn bundle_version(snapshot: &Snapshot, node_id: &str) -> u64 {
    let Some(node) = snapshot.node(node_id) else { return 0 };
    let Some(policy) = policy_for(snapshot, &node.info.region, &node.info.labels) else { return 0 };
    policy.generation.max(snapshot.region_generation(&node.info.region)).max(0) as u64
}

/// The node's bundle, unsigned; `None` if no policy selects it (or it is unknown).
pub fn render(snapshot: &Snapshot, node_id: &str) -> Option<Bundle> {
    let node = snapshot.node(node_id)?;
    let policy = policy_for(snapshot, &node.info.region, &node.info.labels)?;
    let peers = snapshot
        .active_nodes()
        .filter(|n| n.info.region == node.info.region && n.info.node_id != node.info.node_id)
        .filter_map(|n| {
            let wg = n.info.wireguard.as_ref()?;
            Some(Peer {
                name: n.info.node_id.clone(),
                public_key: wg.public_key.clone(),
                endpoint: wg.endpoint.clone(),
                // The control plane's allocation, never what the node claimed.
                allowed_ips: n.info.tunnel_addresses.clone(),
                region: n.info.region.clone(),
            })
        })
        .collect();
    Some(Bundle {
        format: BUNDLE_FORMAT.into(),
        version: bundle_version(snapshot, node_id),
        node_id: node_id.into(),
        region: node.info.region.clone(),
        issued_at_ms: ringfence_proto::now_ms(),
        policy_version: policy.record.version,
        policy_sha256: policy.record.sha256.clone(),
        policy_yaml: policy.record.policy_yaml.clone().unwrap_or_default(),
        peers,
    })
}

/// [`render`], signed.
pub fn render_signed(snapshot: &Snapshot, node_id: &str, key: &SigningKey) -> Option<(Bundle, SignedBundle)> {
    let bundle = render(snapshot, node_id)?;
    let signed = SignedBundle::sign(&bundle, key);
    Some((bundle, signed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::NodeRow;
    use ringfence_proto::api::{Labels, NodeInfo, PolicyRecord, Selector, WireGuardInfo};

    fn node(id: &str, region: &str, labels: &[(&str, &str)], generation: i64, revoked: bool) -> NodeRow {
        NodeRow {
            info: NodeInfo {
                node_id: id.into(),
                region: region.into(),
                labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Labels>(),
                hostname: None,
                wireguard: Some(WireGuardInfo {
                    public_key: format!("key-{id}"),
                    endpoint: Some(format!("{id}:51820")),
                    allowed_ips: vec![],
                }),
                agent_version: None,
                applied_policy_version: None,
                applied_bundle_version: None,
                geo_db_version: None,
                last_seen_ms: None,
                enrolled_ms: 0,
                cert_not_after_ms: 0,
                revoked_ms: revoked.then_some(1),
                tunnel_addresses: vec![],
            },
            generation,
        }
    }

    fn policy(version: u64, selector: &str, generation: i64) -> PolicyRow {
        PolicyRow {
            record: PolicyRecord {
                version,
                selector: Selector::parse(selector).unwrap(),
                author: "a".into(),
                created_ms: 0,
                sha256: format!("sha-{version}"),
                comment: None,
                rollback_of: None,
                name: "p".into(),
                policy_yaml: Some(format!("yaml {version}")),
            },
            generation,
        }
    }

    #[test]
    fn newest_matching_policy_and_region_peers() {
        let snapshot = Snapshot::new(
            9,
            vec![
                node("a", "eu", &[("gpu", "h100")], 1, false),
                node("b", "eu", &[], 2, false),
                node("c", "us", &[], 3, false),
                node("d", "eu", &[], 4, true),
            ],
            // Newest first, as loaded.
            vec![policy(3, "region=eu,gpu=h100", 7), policy(2, "region=us", 6), policy(1, "region=eu", 5)],
        );
        let a = render(&snapshot, "a").unwrap();
        assert_eq!((a.policy_version, a.version), (3, 7));
        assert_eq!(
            a.peers.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["b"],
            "revoked d and us c excluded"
        );
        let b = render(&snapshot, "b").unwrap();
        assert_eq!(
            (b.policy_version, b.version),
            (1, 5),
            "b has no gpu label: v1; eu nodes' newest generation is 4"
        );
        assert_eq!(render(&snapshot, "c").unwrap().policy_version, 2);
        assert!(render(&snapshot, "zz").is_none());
        let none = Snapshot::new(9, snapshot.nodes.clone(), Vec::new());
        assert!(render(&none, "a").is_none());
        assert_eq!(bundle_version(&none, "a"), 0);
    }
}
