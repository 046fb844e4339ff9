//! Policies to bundles: apply, long-poll, signature, selectors, propagation, peers, rollback,
//! diff, history, acknowledgements, invalid policies.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use ringfence_proto::api::{
    BundleAck, ErrorBody, KeyRotation, NodeList, NodeReport, PolicyDiff, PolicyHistory, RollbackRequest,
};
use ringfence_proto::{BundleError, SignedBundle};

use crate::common::{policy_yaml, wg, wg_key, Backend, TestServer};

async fn applied_policy_reaches_selected_nodes_signed(backend: Backend) {
    let server = TestServer::start(backend).await;
    let eu_gpu = server.agent("eu", &[("gpu", "h100")], "key-eu-gpu").await;
    let eu = server.agent("eu", &[], "key-eu").await;
    let us = server.agent("us", &[("gpu", "h100")], "key-us").await;
    // Nothing selects anyone yet: the poll times out with 204.
    let started = Instant::now();
    assert!(eu_gpu.poll(0, 1).await.is_none());
    assert!(started.elapsed() >= Duration::from_millis(900), "waited {:?}", started.elapsed());
    let yaml = policy_yaml("eu-gpu", "198.51.100.0/24");
    let applied = server.apply(&yaml, "region=eu,gpu=h100").await;
    assert_eq!(applied.policy.version, 1);
    assert_eq!(applied.nodes, vec![eu_gpu.node_id.clone()], "only the matching node is selected");
    let signed = eu_gpu.poll(0, 5).await.expect("bundle for the selected node");
    let bundle =
        signed.verify_for_node(&eu_gpu.pinned, 0, &eu_gpu.node_id).expect("verifies with the pinned key");
    assert_eq!(bundle.policy_yaml, yaml);
    assert_eq!(bundle.policy_version, 1);
    assert_eq!(bundle.region, "eu");
    let peers: Vec<&str> = bundle.peers.iter().map(|p| p.public_key.as_str()).collect();
    assert_eq!(peers, [wg_key("key-eu")], "peers: the other node of the region, not the us node");
    assert_eq!(bundle.peers[0].allowed_ips, ["10.77.0.2/32"], "its address from the pool");
    assert_eq!(bundle.peers[0].endpoint, wg("key-eu").endpoint);
    // Unselected nodes get nothing.
    assert!(eu.poll(0, 0).await.is_none(), "eu node without the gpu label has no bundle");
    assert!(us.poll(0, 0).await.is_none(), "us node has no bundle");
    // Same version again: nothing new.
    assert!(eu_gpu.poll(bundle.version, 0).await.is_none());
    // A tampered copy of what the server sent is refused by the agent-side check.
    let mut tampered: SignedBundle = signed.clone();
    tampered.bundle_json = tampered.bundle_json.replace("198.51.100.0/24", "0.0.0.0/0");
    assert_eq!(tampered.verify(&eu_gpu.pinned, 0), Err(BundleError::BadSignature));
    assert!(matches!(signed.verify(&eu_gpu.pinned, bundle.version + 1), Err(BundleError::Rollback { .. })));
    // Ack is recorded in the inventory.
    let ack = BundleAck { bundle_version: bundle.version, policy_version: 1, applied: true, error: None };
    assert_eq!(eu_gpu.post("/v1/ack", &ack).await.unwrap().status(), StatusCode::NO_CONTENT);
    let nodes: NodeList = server.admin_get("/v1/nodes").await.json().await.unwrap();
    let node = nodes.nodes.iter().find(|n| n.node_id == eu_gpu.node_id).unwrap();
    assert_eq!((node.applied_bundle_version, node.applied_policy_version), (Some(bundle.version), Some(1)));
    // Shutdown answers waiting long-polls at once (204) instead of holding the drain.
    let waiting = tokio::spawn(async move { eu_gpu.poll(bundle.version, 30).await });
    server.wait_for_metric("ringfence_longpoll_watchers", 1.0).await;
    let stopping = Instant::now();
    server.stop().await;
    assert!(waiting.await.unwrap().is_none());
    assert!(stopping.elapsed() < Duration::from_secs(2), "drain took {:?}", stopping.elapsed());
}

async fn change_propagates_to_waiting_agents(backend: Backend) {
    let server = TestServer::start(backend).await;
    let a = server.agent("eu", &[], "key-a").await;
    server.apply(&policy_yaml("v1", "198.51.100.0/24"), "region=eu").await;
    let first = a.poll(0, 5).await.unwrap().verify(&a.pinned, 0).unwrap();
    // Wait for the next bundle while the operator applies a new version.
    let waiting = tokio::spawn({
        let a = a.against(&server);
        let after = first.version;
        async move {
            let started = Instant::now();
            let signed = a.poll(after, 20).await;
            (signed, started.elapsed())
        }
    });
    // Apply once the poll is parked on the server and has been for 300 ms (so `waited`
    // measures a real wait).
    let parked = Instant::now();
    server.wait_for_metric("ringfence_longpoll_watchers", 1.0).await;
    tokio::time::sleep_until((parked + Duration::from_millis(300)).into()).await;
    let applied = Instant::now();
    server.apply(&policy_yaml("v2", "203.0.113.0/24"), "region=eu").await;
    let (signed, waited) = waiting.await.unwrap();
    let second =
        signed.expect("the waiting poll returns the new bundle").verify(&a.pinned, first.version).unwrap();
    assert!(applied.elapsed() < Duration::from_secs(2), "propagation took {:?}", applied.elapsed());
    assert!(waited >= Duration::from_millis(250), "the poll really waited: {waited:?}");
    assert_eq!(second.policy_version, 2);
    assert!(second.version > first.version);
    assert!(second.policy_yaml.contains("203.0.113.0/24"));
    // A new peer in the region changes the bundle too (peers resolved), same policy.
    let b = server.agent("eu", &[], "key-bb").await;
    let third =
        a.poll(second.version, 5).await.expect("peer change").verify(&a.pinned, second.version).unwrap();
    assert_eq!(third.policy_version, 2);
    assert_eq!(third.peers.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), [b.node_id.as_str()]);
    // A key rotated by an operator propagates, and the peer then reports it.
    let rotation = KeyRotation { public_key: wg_key("rotated-key") };
    let resp = server.admin_post(&format!("/v1/nodes/{}/wireguard-key", b.node_id), &rotation).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let fourth = a.poll(third.version, 5).await.expect("wg change").verify(&a.pinned, third.version).unwrap();
    assert_eq!(fourth.peers[0].public_key, wg_key("rotated-key"));
    let report = NodeReport { wireguard: Some(wg("rotated-key")), ..Default::default() };
    assert_eq!(b.post("/v1/report", &report).await.unwrap().status(), StatusCode::NO_CONTENT);
    // Revoking the peer removes it.
    server.admin_post(&format!("/v1/nodes/{}/revoke", b.node_id), &serde_json::json!({})).await;
    let fifth =
        a.poll(fourth.version, 5).await.expect("revocation").verify(&a.pinned, fourth.version).unwrap();
    assert!(fifth.peers.is_empty());
    server.stop().await;
}

async fn history_diff_rollback(backend: Backend) {
    let server = TestServer::start(backend).await;
    let a = server.agent("eu", &[], "key-a").await;
    let v1 = policy_yaml("p", "198.51.100.0/24");
    let v2 = policy_yaml("p", "203.0.113.0/24");
    server.apply(&v1, "region=eu").await;
    server.apply(&v2, "region=eu").await;
    let diff: PolicyDiff = server.admin_get("/v1/policies/diff?from=1&to=2").await.json().await.unwrap();
    assert!(
        diff.diff.contains("-    - {name: web, action: allow, to: {cidrs: [198.51.100.0/24]}}"),
        "{}",
        diff.diff
    );
    assert!(
        diff.diff.contains("+    - {name: web, action: allow, to: {cidrs: [203.0.113.0/24]}}"),
        "{}",
        diff.diff
    );
    let before = a.poll(0, 5).await.unwrap().verify(&a.pinned, 0).unwrap();
    assert_eq!(before.policy_version, 2);
    let resp = server
        .admin_post("/v1/policies/rollback", &RollbackRequest { version: 1, author: Some("oncall".into()) })
        .await;
    assert_eq!(resp.status(), StatusCode::OK, "{}", resp.text().await.unwrap());
    let after = a.poll(before.version, 5).await.unwrap().verify(&a.pinned, before.version).unwrap();
    assert_eq!(after.policy_version, 3, "a rollback is a new version");
    assert_eq!(after.policy_yaml, v1);
    let history: PolicyHistory = server.admin_get("/v1/policies/history").await.json().await.unwrap();
    let versions: Vec<(u64, Option<u64>, &str)> =
        history.policies.iter().map(|p| (p.version, p.rollback_of, p.author.as_str())).collect();
    assert_eq!(versions, [(3, Some(1), "oncall"), (2, None, "tester"), (1, None, "tester")]);
    assert!(history.policies.iter().all(|p| p.policy_yaml.is_none()));
    let missing =
        server.admin_post("/v1/policies/rollback", &RollbackRequest { version: 99, author: None }).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    // Bad parameters get JSON errors too.
    for path in ["/v1/policies/latest", "/v1/policies/diff?from=1", "/v1/policies/diff?from=1&to=x"] {
        let resp = server.admin_get(path).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{path}");
        let body: ErrorBody = resp.json().await.unwrap_or_else(|e| panic!("{path}: not a JSON error: {e}"));
        assert!(!body.error.is_empty());
    }
    let one =
        server.admin_get("/v1/policies/1").await.json::<ringfence_proto::api::PolicyRecord>().await.unwrap();
    assert_eq!(one.policy_yaml.as_deref(), Some(v1.as_str()));
    server.stop().await;
}

async fn invalid_policy_rejected_with_every_diagnostic(backend: Backend) {
    let server = TestServer::start(backend).await;
    let bad = "apiVersion: ringfence.dev/v1\nkind: EgressPolicy\nmetadata: {name: x}\nspec:\n  defaultAction: deny\n  egress:\n    - name: x\n      acton: allow\n      to: {cidrs: [10.0.0.1/8]}\n";
    let req = serde_json::json!({"policy_yaml": bad, "selector": {}});
    let resp = server.admin_post("/v1/policies", &req).await;
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: ErrorBody = resp.json().await.unwrap();
    let lines: Vec<(usize, usize)> = body.diagnostics.iter().map(|d| (d.line, d.column)).collect();
    assert_eq!(lines, [(7, 7), (8, 7), (9, 20)], "{body:?}");
    assert!(body.diagnostics[1].message.contains("unknown field \"acton\""), "{body:?}");
    // Unknown request fields are refused too.
    let resp =
        server.admin_post("/v1/policies", &serde_json::json!({"policy_yaml": "x", "selctor": {}})).await;
    assert!(resp.status().is_client_error());
    assert!(resp.text().await.unwrap().contains("unknown field `selctor`"));
    let history: PolicyHistory = server.admin_get("/v1/policies/history").await.json().await.unwrap();
    assert!(history.policies.is_empty(), "nothing stored");
    server.stop().await;
}

crate::on_both_backends!(
    applied_policy_reaches_selected_nodes_signed,
    change_propagates_to_waiting_agents,
    history_diff_rollback,
    invalid_policy_rejected_with_every_diagnostic,
);
