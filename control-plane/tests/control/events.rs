//! Events: stored once per (node, id), forwarded to Alertmanager, a webhook and syslog.

use reqwest::StatusCode;
use ringfence_proto::api::{AlertList, Event, EventBatch, EventsAccepted};
use serde_json::json;

use crate::common::receiver::{self, next};
use crate::common::{Backend, Options, TestServer};

fn event(id: &str, kind: &str) -> Event {
    Event {
        id: id.into(),
        kind: kind.into(),
        time_ms: 1_780_000_000_000,
        severity: "critical".into(),
        summary: format!("{kind} to 198.51.100.7:443"),
        details: json!({"dst": "198.51.100.7", "port": 443}),
    }
}

async fn events_stored_exactly_once(backend: Backend) {
    let server = TestServer::start(backend).await;
    let a = server.agent("eu", &[], "key-a").await;
    let b = server.agent("eu", &[], "key-b").await;
    let batch = EventBatch { events: vec![event("e1", "deny"), event("e2", "plaintext-drop")] };
    let first: EventsAccepted = a.post("/v1/events", &batch).await.unwrap().json().await.unwrap();
    assert_eq!(first, EventsAccepted { accepted: vec!["e1".into(), "e2".into()], duplicates: vec![] });
    // Delivered again (the agent did not see the answer), plus one new one.
    let again =
        EventBatch { events: vec![event("e2", "plaintext-drop"), event("e3", "deny"), event("e1", "deny")] };
    let second: EventsAccepted = a.post("/v1/events", &again).await.unwrap().json().await.unwrap();
    assert_eq!(
        second,
        EventsAccepted { accepted: vec!["e3".into()], duplicates: vec!["e2".into(), "e1".into()] }
    );
    // Ids are per node: another node's e1 is another event.
    let other: EventsAccepted = b
        .post("/v1/events", &EventBatch { events: vec![event("e1", "deny")] })
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(other.accepted, ["e1"]);
    let alerts: AlertList = server.admin_get("/v1/alerts?limit=50").await.json().await.unwrap();
    let mut stored: Vec<(String, String)> =
        alerts.alerts.iter().map(|s| (s.node_id.clone(), s.event.id.clone())).collect();
    stored.sort();
    let mut expected = vec![
        (a.node_id.clone(), "e1".to_owned()),
        (a.node_id.clone(), "e2".to_owned()),
        (a.node_id.clone(), "e3".to_owned()),
        (b.node_id.clone(), "e1".to_owned()),
    ];
    expected.sort();
    assert_eq!(stored, expected);
    let e2 = alerts.alerts.iter().find(|s| s.event.id == "e2").unwrap();
    assert_eq!(e2.event, event("e2", "plaintext-drop"));
    let metrics = server.metrics().await;
    assert!(metrics.contains("\nringfence_events_ingested_total 4\n"), "{metrics}");
    assert!(metrics.contains("\nringfence_events_duplicate_total 2\n"), "{metrics}");
    assert!(metrics.contains("\nringfence_nodes 2\n"), "{metrics}");
    // Malformed events are refused as a whole.
    let resp = a
        .post("/v1/events", &json!({"events": [{"id": "", "kind": "deny", "time_ms": 1, "summary": "s"}]}))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    server.stop().await;
}

async fn alerts_forwarded_to_every_sink(backend: Backend) {
    // The Alertmanager fails twice first: forwarding retries.
    let (am_url, mut am) = receiver::http(2).await;
    let (hook_url, mut hook) = receiver::http(0).await;
    let (syslog_addr, mut syslog) = receiver::udp().await;
    let options = Options {
        alertmanager: Some(am_url),
        webhook: Some(format!("{hook_url}/hooks/ringfence")),
        syslog: Some(syslog_addr),
        ..Default::default()
    };
    let server = TestServer::start_with(backend, options).await;
    let a = server.agent("eu", &[], "key-a").await;
    let batch = EventBatch { events: vec![event("x1", "exfiltration")] };
    assert_eq!(a.post("/v1/events", &batch).await.unwrap().status(), StatusCode::OK);
    let got = next(&mut am, "alertmanager").await;
    assert_eq!(got.path, "/api/v2/alerts");
    let alert = &got.body[0];
    assert_eq!(alert["labels"]["alertname"], "RingfenceExfiltration");
    assert_eq!(alert["labels"]["node"], a.node_id.as_str());
    assert_eq!(alert["labels"]["severity"], "critical");
    assert_eq!(alert["annotations"]["summary"], "exfiltration to 198.51.100.7:443");
    assert!(alert["startsAt"].as_str().unwrap().starts_with("2026-05-28T"), "{alert}");
    let got = next(&mut hook, "webhook").await;
    assert_eq!(got.path, "/hooks/ringfence");
    assert_eq!(got.body["event"]["id"], "x1");
    assert_eq!(got.body["event"]["node_id"], a.node_id.as_str());
    let line = next(&mut syslog, "syslog").await;
    assert!(line.starts_with("<130>1 2026-05-28T"), "{line}");
    assert!(
        line.contains(&format!("node=\"{}\" id=\"x1\" kind=\"exfiltration\"] exfiltration to", a.node_id)),
        "{line}"
    );
    // A duplicate delivery is not forwarded again.
    a.post("/v1/events", &batch).await.unwrap();
    a.post("/v1/events", &EventBatch { events: vec![event("x2", "deny")] }).await.unwrap();
    assert_eq!(next(&mut hook, "webhook").await.body["event"]["id"], "x2");
    server.stop().await;
}

/// Problem 4 of the fleet-hardening issue: one node floods events. It gets 429 with Retry-After
/// beyond its rate, what is stored stays within the limit, every stored event is one small audit
/// record, and another node's events are taken meanwhile.
async fn one_nodes_event_flood_is_bounded(backend: Backend) {
    let options = Options {
        extra: vec!["--event-rate".into(), "100".into(), "--event-burst".into(), "1000".into()],
        ..Default::default()
    };
    let server = TestServer::start_with(backend, options).await;
    let flooder = server.agent("eu", &[], "flooder").await;
    let honest = server.agent("eu", &[], "honest").await;
    let started = std::time::Instant::now();
    let (mut limited, mut sent) = (0, 0);
    let mut batch_no = 0;
    while started.elapsed() < std::time::Duration::from_secs(3) {
        batch_no += 1;
        let events = (0..500).map(|i| event(&format!("f{batch_no}-{i}"), "deny")).collect();
        let resp = flooder.post("/v1/events", &EventBatch { events }).await.unwrap();
        match resp.status() {
            StatusCode::OK => sent += 500,
            StatusCode::TOO_MANY_REQUESTS => {
                let retry: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
                assert!((1..=10).contains(&retry), "Retry-After {retry}");
                limited += 1;
            }
            other => panic!("{other}: {}", resp.text().await.unwrap()),
        }
        // The honest node is not held back by the flood.
        let one = EventBatch { events: vec![event(&format!("h{batch_no}"), "exfiltration")] };
        assert_eq!(honest.post("/v1/events", &one).await.unwrap().status(), StatusCode::OK);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let stored = ringfence_control::db::events::count(server.db().pool()).await.unwrap() as usize;
    let bound = 1000.0 + 100.0 * elapsed + batch_no as f64;
    println!("flood: {batch_no} batches of 500 in {elapsed:.1} s, {limited} refused (429), {stored} events stored (bound {bound:.0})");
    assert!(limited > 0 && stored as f64 <= bound, "{stored} stored, bound {bound}");
    assert_eq!(stored, sent + batch_no, "accepted batches are stored whole");
    // Each stored event is its own audit record, small whatever the batch size.
    let text = server.admin_get("/v1/audit").await.text().await.unwrap();
    let alerts: Vec<&str> = text.lines().filter(|l| l.contains("\"action\":\"alert\"")).collect();
    assert_eq!(alerts.len(), stored);
    assert!(alerts.iter().all(|l| l.len() < 1024), "{}", alerts.iter().map(|l| l.len()).max().unwrap_or(0));
    let v: ringfence_proto::api::AuditVerification =
        server.admin_get("/v1/audit/verify").await.json().await.unwrap();
    assert!(v.ok, "{v:?}");
    // Events the API does not list are refused.
    for bad in [
        json!({"id": "x", "kind": "Deny!", "time_ms": 1, "summary": "s"}),
        json!({"id": "x", "kind": "deny", "time_ms": 1, "summary": "s", "severity": "high"}),
    ] {
        let resp = honest.post("/v1/events", &json!({"events": [bad]})).await.unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    }
    server.stop().await;
}

crate::on_both_backends!(
    events_stored_exactly_once,
    alerts_forwarded_to_every_sink,
    one_nodes_event_flood_is_bounded
);
