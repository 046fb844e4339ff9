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
    let metrics = server.anonymous().get(server.url("/metrics")).send().await.unwrap().text().await.unwrap();
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

crate::on_both_backends!(events_stored_exactly_once, alerts_forwarded_to_every_sink);
