//! Renders a node's bundle from a [`Snapshot`]: the newest node-default policy whose selector
//! matches the node, the newest version of every workload policy whose selector matches it, as
//! WireGuard peers the other unrevoked nodes of its region that reported a key, and as remote
//! workloads the workloads those nodes reported, with their tunnel addresses (the control
//! plane's allocation: the source addresses their traffic has inside the mesh).
//!
//! The bundle version is the newest generation among its inputs (every policy whose selector
//! matches the node, and every node of the region, revoked ones included; a node's reported
//! workloads move its generation): it grows whenever the bundle's content can have changed,
//! and never for changes that do not concern the node.

use ed25519_dalek::SigningKey;
use ringfence_proto::{Bundle, Peer, RemoteWorkloadDoc, SignedBundle, WorkloadPolicyDoc, BUNDLE_FORMAT};

use crate::db::PolicyRow;
use crate::heads::WorkloadHead;
use crate::hub::Snapshot;

/// The policy in force for a node of this region and labels.
pub fn policy_for<'a>(
    snapshot: &'a Snapshot,
    region: &str,
    labels: &ringfence_proto::api::Labels,
) -> Option<&'a PolicyRow> {
    snapshot.policies.iter().find(|p| p.record.selector.matches(region, labels))
}

/// The workload policies for a node of this region and labels.
pub fn workload_policies_for<'a>(
    snapshot: &'a Snapshot,
    region: &'a str,
    labels: &'a ringfence_proto::api::Labels,
) -> impl Iterator<Item = &'a WorkloadHead> + 'a {
    snapshot.workload_policies.iter().filter(move |w| w.row.record.selector.matches(region, labels))
}

/// The version the node's bundle has in `snapshot` (0: no node-default policy selects it, no
/// bundle).
pub fn bundle_version(snapshot: &Snapshot, node_id: &str) -> u64 {
    let Some(node) = snapshot.node(node_id) else { return 0 };
    let (region, labels) = (&node.info.region, &node.info.labels);
    if policy_for(snapshot, region, labels).is_none() {
        return 0;
    }
    snapshot.policies_generation(region, labels).max(snapshot.region_generation(region)).max(0) as u64
}

/// The node's bundle, unsigned; `None` if no policy selects it (or it is unknown).
pub fn render(snapshot: &Snapshot, node_id: &str) -> Option<Bundle> {
    let node = snapshot.node(node_id)?;
    let policy = policy_for(snapshot, &node.info.region, &node.info.labels)?;
    let others =
        || snapshot.active_nodes().filter(|n| n.info.region == node.info.region && n.info.node_id != node_id);
    let peers = others()
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
    let workload_policies = workload_policies_for(snapshot, &node.info.region, &node.info.labels)
        .map(|w| WorkloadPolicyDoc {
            name: w.row.record.name.clone(),
            version: w.row.record.version,
            sha256: w.row.record.sha256.clone(),
            yaml: w.row.record.policy_yaml.clone().unwrap_or_default(),
        })
        .collect();
    let remote_workloads = others()
        .flat_map(|n| {
            n.info.workloads.iter().map(|w| RemoteWorkloadDoc {
                node_id: n.info.node_id.clone(),
                labels: w.labels.clone(),
                addresses: n.info.tunnel_addresses.clone(),
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
        workload_policies,
        remote_workloads,
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
                wireguard_peers: vec![],
                revoked_ms: revoked.then_some(1),
                tunnel_addresses: vec![],
                workloads: vec![],
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
