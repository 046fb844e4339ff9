//! Join tokens, enrollment, client certificates, renewal and revocation.

use std::time::Duration;

use reqwest::{Identity, StatusCode};
use ringfence_proto::api::{EventBatch, NodeList, NodeReport, RenewRequest, RenewResponse};

use crate::common::{client, policy_yaml, wg, wg_key, Agent, Backend, Options, TestServer};

async fn token_is_one_time(backend: Backend) {
    let server = TestServer::start(backend).await;
    let token = server.token("eu", &[("gpu", "h100")], None).await;
    let agent = Agent::enroll(&server, &token, Some(wg("key-a"))).await.expect("first use enrolls");
    assert!(agent.node_id.starts_with("n-"), "{}", agent.node_id);
    assert_eq!(agent.enrolled.region, "eu");
    assert_eq!(agent.enrolled.labels.get("gpu").map(String::as_str), Some("h100"));
    let not_after = agent.enrolled.not_after_ms - ringfence_proto::now_ms();
    assert!(
        not_after <= 4 * 3600 * 1000 && not_after > 4 * 3600 * 1000 - 60_000,
        "default lifetime 4h: {not_after}"
    );
    let (status, body) = Agent::enroll(&server, &token, None).await.err().expect("second use refused");
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("already used"), "{body}");
    let (status, body) =
        Agent::enroll(&server, "rfj_not-a-token", None).await.err().expect("unknown refused");
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("unknown join token"), "{body}");
    // The enrolled node is in the inventory with what it sent.
    let nodes: NodeList = server.admin_get("/v1/nodes").await.json().await.unwrap();
    assert_eq!(nodes.nodes.len(), 1);
    let node = &nodes.nodes[0];
    assert_eq!((node.node_id.as_str(), node.region.as_str()), (agent.node_id.as_str(), "eu"));
    assert_eq!(node.wireguard.as_ref().unwrap().public_key, wg_key("key-a"));
    assert_eq!(node.tunnel_addresses, ["10.77.0.1/32"], "allocated from the pool");
    assert_eq!(agent.enrolled.tunnel_addresses, node.tunnel_addresses);
    assert_eq!(node.agent_version.as_deref(), Some("0.1.0-test"));
    server.stop().await;
}

async fn expired_token_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let token = server.token("eu", &[], Some(1)).await;
    // Expired without waiting for the wall clock: its stored expiry moves 2 s into the past.
    sqlx::query("UPDATE tokens SET expires_ms = expires_ms - 2000")
        .execute(server.db().pool())
        .await
        .unwrap();
    let (status, body) = Agent::enroll(&server, &token, None).await.err().expect("expired token refused");
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("expired"), "{body}");
    server.stop().await;
}

async fn no_client_certificate_gets_nothing(backend: Backend) {
    let server = TestServer::start(backend).await;
    let agent = server.agent("eu", &[], "key-a").await;
    server.apply(&policy_yaml("p", "198.51.100.0/24"), "region=eu").await;
    assert!(agent.poll(0, 0).await.is_some(), "the enrolled agent gets a bundle");
    let anon = server.anonymous();
    for (method, path) in [
        ("GET", "/v1/bundle?after=0&wait=0"),
        ("POST", "/v1/report"),
        ("POST", "/v1/events"),
        ("POST", "/v1/renew"),
        ("POST", "/v1/ack"),
    ] {
        let req = match method {
            "GET" => anon.get(server.url(path)),
            _ => anon.post(server.url(path)).json(&serde_json::json!({})),
        };
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
        let body = resp.text().await.unwrap();
        assert!(body.contains("client certificate required") && !body.contains("bundle_json"), "{body}");
    }
    // The admin credential is no client certificate either.
    let resp = anon.get(server.url("/v1/bundle")).bearer_auth(&server.admin_token).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    // And admin endpoints refuse agents and anonymous callers.
    assert_eq!(anon.get(server.url("/v1/nodes")).send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(agent.get("/v1/nodes").await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let wrong = anon.get(server.url("/v1/nodes")).bearer_auth("0".repeat(64)).send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    // A certificate from another CA does not even complete the handshake.
    let other = TestServer::start(Backend::Sqlite).await;
    let foreign = other.agent("eu", &[], "key-x").await;
    let identity = Identity::from_pem(format!("{}{}", foreign.cert_pem, foreign.key_pem).as_bytes()).unwrap();
    let impostor = client(&server.ca_pem, Some(identity));
    let result = impostor.get(server.url("/v1/bundle?after=0&wait=0")).send().await;
    assert!(result.is_err(), "foreign client certificate accepted: {:?}", result.map(|r| r.status()));
    other.stop().await;
    server.stop().await;
}

async fn expired_certificate_refused_and_renewal_works(backend: Backend) {
    let server =
        TestServer::start_with(backend, Options { cert_ttl: Some("2s"), ..Default::default() }).await;
    let agent = server.agent("eu", &[], "key-a").await;
    let life = agent.enrolled.not_after_ms - ringfence_proto::now_ms();
    assert!(life <= 2000, "--cert-ttl 2s honoured: {life} ms");
    let report =
        NodeReport { geo_db_version: Some("GeoLite2-Country 2026-11-01".into()), ..Default::default() };
    assert_eq!(agent.post("/v1/report", &report).await.unwrap().status(), StatusCode::NO_CONTENT);
    // Renew while valid, with the same key.
    let csr = ringfence_proto::csr::csr_for_key_pem(&agent.key_pem, "test-host").unwrap();
    let resp = agent.post("/v1/renew", &RenewRequest { csr_pem: csr }).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let renewed1: RenewResponse = resp.json().await.unwrap();
    assert!(renewed1.not_after_ms >= agent.enrolled.not_after_ms);
    // The first certificate expires (TLS checks the wall clock): new connections with it are
    // tried until one fails the handshake, at most 5 s past its lifetime (times in certificates
    // have one-second resolution).
    let identity = || Identity::from_pem(format!("{}{}", agent.cert_pem, agent.key_pem).as_bytes()).unwrap();
    let deadline = std::time::UNIX_EPOCH + Duration::from_millis(agent.enrolled.not_after_ms as u64 + 5000);
    let fresh = loop {
        let fresh = client(&server.ca_pem, Some(identity()));
        let result = fresh.post(server.url("/v1/report")).json(&report).send().await;
        match result {
            // Certificate times are whole seconds: the handshake may fail up to 1 s early.
            Err(_) if ringfence_proto::now_ms() >= agent.enrolled.not_after_ms - 1000 => break fresh,
            Err(e) => panic!("a valid certificate refused: {e}"),
            Ok(r) if std::time::SystemTime::now() > deadline => {
                panic!("expired certificate accepted: {} {}", r.status(), r.text().await.unwrap())
            }
            Ok(_) => {} // still valid
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // A pooled connection opened while it was valid gets 403.
    if let Ok(resp) = agent.post("/v1/report", &report).await {
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "pooled connection with an expired certificate");
    }
    // Renewal after expiry is refused too (same handshake), so a node must renew in time.
    let csr = ringfence_proto::csr::csr_for_key_pem(&agent.key_pem, "test-host").unwrap();
    assert!(fresh.post(server.url("/v1/renew")).json(&RenewRequest { csr_pem: csr }).send().await.is_err());
    // A certificate renewed in time works.
    let agent2 = server.agent("eu", &[], "key-b").await;
    let csr = ringfence_proto::csr::csr_for_key_pem(&agent2.key_pem, "test-host").unwrap();
    let renewed: RenewResponse =
        agent2.post("/v1/renew", &RenewRequest { csr_pem: csr }).await.unwrap().json().await.unwrap();
    let with_renewed = client(
        &server.ca_pem,
        Some(
            Identity::from_pem(format!("{}{}", renewed.certificate_pem, agent2.key_pem).as_bytes()).unwrap(),
        ),
    );
    let resp = with_renewed
        .post(server.url("/v1/events"))
        .json(&EventBatch { events: vec![] })
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "renewed certificate works");
    let nodes: NodeList = server.admin_get("/v1/nodes").await.json().await.unwrap();
    let first = nodes.nodes.iter().find(|n| n.node_id == agent.node_id).unwrap();
    assert_eq!(first.geo_db_version.as_deref(), Some("GeoLite2-Country 2026-11-01"));
    assert_eq!(first.cert_not_after_ms, renewed1.not_after_ms, "the inventory shows the newest certificate");
    server.stop().await;
}

async fn revoked_node_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let agent = server.agent("eu", &[], "key-a").await;
    server.apply(&policy_yaml("p", "198.51.100.0/24"), "").await;
    assert!(agent.poll(0, 0).await.is_some());
    let resp =
        server.admin_post(&format!("/v1/nodes/{}/revoke", agent.node_id), &serde_json::json!({})).await;
    assert_eq!(resp.status(), StatusCode::OK, "{}", resp.text().await.unwrap());
    for path in ["/v1/bundle?after=0&wait=0"] {
        let resp = agent.get(path).await.unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{path}");
        assert!(resp.text().await.unwrap().contains("revoked"));
    }
    let csr = ringfence_proto::csr::csr_for_key_pem(&agent.key_pem, "h").unwrap();
    assert_eq!(
        agent.post("/v1/renew", &RenewRequest { csr_pem: csr }).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let again =
        server.admin_post(&format!("/v1/nodes/{}/revoke", agent.node_id), &serde_json::json!({})).await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    let unknown = server.admin_post("/v1/nodes/n-nope/revoke", &serde_json::json!({})).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let nodes: NodeList = server.admin_get("/v1/nodes").await.json().await.unwrap();
    assert!(nodes.nodes[0].revoked_ms.is_some());
    server.stop().await;
}

crate::on_both_backends!(
    token_is_one_time,
    expired_token_refused,
    no_client_certificate_gets_nothing,
    expired_certificate_refused_and_renewal_works,
    revoked_node_refused,
);
