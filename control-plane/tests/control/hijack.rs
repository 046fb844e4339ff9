//! Problem 1 of the fleet-hardening issue: a compromised node tries to rewrite its region's
//! WireGuard mesh (another node's key, routes it does not own, a foreign endpoint, a duplicate
//! key at enrollment, a report flood). Every attempt is refused, audited and alerted; its peers'
//! bundles do not change.

use reqwest::StatusCode;
use ringfence_proto::api::{AlertList, ErrorBody, NodeReport, WireGuardInfo};
use ringfence_proto::{AuditRecord, Bundle};

use crate::common::{policy_yaml, wg, wg_key, Agent, Backend, Options, TestServer};

async fn bundle(agent: &Agent) -> Bundle {
    agent.poll(0, 5).await.expect("a bundle").verify(&agent.pinned, 0).unwrap()
}

async fn audit(server: &TestServer, action: &str) -> Vec<AuditRecord> {
    let text = server.admin_get("/v1/audit").await.text().await.unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<AuditRecord>(l).unwrap())
        .filter(|r| r.action == action)
        .collect()
}

async fn report(agent: &Agent, wireguard: WireGuardInfo) -> (StatusCode, String) {
    let resp =
        agent.post("/v1/report", &NodeReport { wireguard: Some(wireguard), ..Default::default() }).await;
    let resp = resp.unwrap();
    let status = resp.status();
    let text = resp.text().await.unwrap();
    let error = serde_json::from_str::<ErrorBody>(&text).map(|e| e.error).unwrap_or(text);
    (status, error)
}

async fn hijack_attempts_refused_and_peers_unaffected(backend: Backend) {
    let options = Options { extra: vec!["--report-rate".into(), "6".into()], ..Default::default() };
    let server = TestServer::start_with(backend, options).await;
    let a = server.agent("eu", &[], "node-a").await;
    let b = server.agent("eu", &[], "node-b").await;
    let mallory = server.agent("eu", &[], "mallory").await;
    server.apply(&policy_yaml("mesh", "198.51.100.0/24"), "region=eu").await;
    let before_a = bundle(&a).await;
    let before_b = bundle(&b).await;
    let peer_b = before_a.peers.iter().find(|p| p.name == b.node_id).unwrap().clone();
    assert_eq!(
        (peer_b.public_key.as_str(), peer_b.allowed_ips.as_slice()),
        (wg_key("node-b").as_str(), &["10.77.0.2/32".to_string()][..])
    );

    // The v1 hijack: b's key, half the Internet each way, an endpoint outside the region's network.
    let hijack = WireGuardInfo {
        public_key: wg_key("node-b"),
        endpoint: Some("198.51.100.66:51820".into()),
        allowed_ips: vec!["0.0.0.0/1".into(), "128.0.0.0/1".into()],
    };
    for _ in 0..3 {
        let (status, error) = report(&mallory, hijack.clone()).await;
        assert_eq!(status, StatusCode::CONFLICT, "{error}");
        for needle in [
            "rotate-key",
            "not in region eu's endpoint networks",
            "allowed_ips 0.0.0.0/1: not this node's tunnel address",
        ] {
            assert!(error.contains(needle), "{needle:?} in {error}");
        }
    }
    // Its own key is not another node's: a fresh key for mallory is refused too (rotation is the
    // operator's), and so is another node's key with mallory's own routes and endpoint.
    let (status, error) = report(&mallory, wg("mallory-new-key")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");
    let stolen = WireGuardInfo { public_key: wg_key("node-b"), ..wg("mallory") };
    let (status, error) = report(&mallory, stolen).await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");

    // A new node enrolling with b's key is refused; its token stays unused.
    let token = server.token("eu", &[], None).await;
    let (status, body) = Agent::enroll(&server, &token, Some(wg("node-b"))).await.err().expect("refused");
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body.contains("already bound to node"), "{body}");
    assert!(Agent::enroll(&server, &token, Some(wg("node-d"))).await.is_ok(), "the token still works");

    // Audited once per distinct claim, and alerted.
    let refusals = audit(&server, "node.claim_refused").await;
    assert_eq!(refusals.len(), 4, "{refusals:#?}");
    assert_eq!(refusals[0].details["node_id"], mallory.node_id.as_str());
    assert_eq!(refusals[0].details["claim"]["allowed_ips"][0], "0.0.0.0/1");
    let alerts: AlertList = server.admin_get("/v1/alerts?limit=100").await.json().await.unwrap();
    let claims: Vec<_> = alerts.alerts.iter().filter(|e| e.event.kind == "mesh-claim-refused").collect();
    assert_eq!(claims.len(), 4);
    assert!(claims.iter().all(|e| e.event.severity == "critical"));

    // A flood of reports (an endpoint that moves within the allowed network) is rate limited:
    // at most --report-rate new identities, then 429 with Retry-After.
    let mut limited = 0;
    for i in 0..60 {
        let moving = WireGuardInfo { endpoint: Some(format!("192.0.2.{}:51820", 100 + i)), ..wg("mallory") };
        let resp = mallory
            .post("/v1/report", &NodeReport { wireguard: Some(moving), ..Default::default() })
            .await
            .unwrap();
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            let retry: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((1..=10).contains(&retry), "Retry-After {retry}");
            limited += 1;
        } else {
            assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        }
    }
    assert!(limited >= 55, "{limited} of 60 reports limited");
    let changes = audit(&server, "node.wireguard").await;
    assert!(changes.len() <= 6, "{} identity changes", changes.len());

    // Peers unaffected: b's entry in a's bundle is what it was; b sees nothing of the hijack.
    let after_a = bundle(&a).await;
    assert_eq!(after_a.peers.iter().find(|p| p.name == b.node_id), Some(&peer_b));
    for p in &after_a.peers {
        assert_eq!(p.allowed_ips.len(), 1, "{p:?}");
        assert!(p.allowed_ips[0].starts_with("10.77.0."), "{p:?}");
    }
    let after_b = bundle(&b).await;
    let mallory_in_b =
        |bundle: &Bundle| bundle.peers.iter().find(|p| p.name == mallory.node_id).cloned().unwrap();
    assert_eq!(mallory_in_b(&after_b).public_key, mallory_in_b(&before_b).public_key);
    assert_eq!(mallory_in_b(&after_b).allowed_ips, ["10.77.0.3/32"]);
    // A report that changes nothing makes no new bundle.
    let (status, _) = report(&a, wg("node-a")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(b.poll(after_b.version, 1).await.is_none(), "no new bundle for an unchanged report");
    server.stop().await;
}

async fn operator_pins_addresses_and_rotates_keys(backend: Backend) {
    let server = TestServer::start(backend).await;
    let a = server.agent("eu", &[], "node-a").await;
    let b = server.agent("eu", &[], "node-b").await;
    server.apply(&policy_yaml("mesh", "198.51.100.0/24"), "region=eu").await;
    let first = bundle(&a).await;
    let pin = serde_json::json!({"addresses": ["10.78.5.0/28"]});
    let resp = server.admin_post(&format!("/v1/nodes/{}/addresses", b.node_id), &pin).await;
    assert_eq!(resp.status(), StatusCode::OK, "{}", resp.text().await.unwrap());
    let pinned = a.poll(first.version, 5).await.unwrap().verify(&a.pinned, first.version).unwrap();
    assert_eq!(pinned.peers[0].allowed_ips, ["10.78.5.0/28"]);
    // Overlapping another node's addresses, or a key another node holds: refused.
    let overlap = serde_json::json!({"addresses": ["10.78.5.8/29"]});
    let resp = server.admin_post(&format!("/v1/nodes/{}/addresses", a.node_id), &overlap).await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    let taken = serde_json::json!({"public_key": wg_key("node-a")});
    let resp = server.admin_post(&format!("/v1/nodes/{}/wireguard-key", b.node_id), &taken).await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    // b may now claim a part of its pinned network.
    let claim = WireGuardInfo { allowed_ips: vec!["10.78.5.4/30".into()], ..wg("node-b") };
    assert_eq!(report(&b, claim).await.0, StatusCode::NO_CONTENT);
    let actions: Vec<String> =
        audit(&server, "node.addresses").await.iter().map(|r| r.action.clone()).collect();
    assert_eq!(actions, ["node.addresses"]);
    server.stop().await;
}

crate::on_both_backends!(
    hijack_attempts_refused_and_peers_unaffected,
    operator_pins_addresses_and_rotates_keys
);
