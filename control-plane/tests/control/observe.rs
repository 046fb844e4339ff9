//! `ringfence observe` against a real server with enrolled agents: stored flows filtered by the
//! server (node, region, workload labels, verdict, destination CIDR or country), the table and
//! JSON outputs, and `-f` following new events as agents deliver them.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use ringfence_proto::api::{EventBatch, LiveFlowBatch, ObserveLine};

use crate::common::cli::ringfence_bin;
use crate::common::{agent_event, Agent, Backend, TestServer};

async fn deliver(agent: &Agent, events: Vec<ringfence_proto::api::Event>) {
    let resp = agent.post("/v1/events", &EventBatch { events }).await.unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
}

/// The event ids `ringfence observe -o json ARGS` prints (stored flows only).
async fn observed(server: &TestServer, args: &[&str]) -> Vec<String> {
    let mut full = vec!["observe", "-o", "json"];
    full.extend_from_slice(args);
    let out = server.cli(&full).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    stdout
        .lines()
        .map(|l| match serde_json::from_str::<ObserveLine>(l).unwrap_or_else(|e| panic!("{l}: {e}")) {
            ObserveLine::Flow(f) => f.event_id,
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

async fn observe_filters_on_the_server_and_follows(backend: Backend) {
    let server = TestServer::start(backend).await;
    let eu = server.agent("eu", &[], "ob-a").await;
    let us = server.agent("us", &[], "ob-b").await;
    deliver(
        &eu,
        vec![
            agent_event("d1", "deny", "203.0.113.9", "team=ml,job=train"),
            agent_event("p1", "plaintext-drop", "198.51.100.20", "team=ml"),
        ],
    )
    .await;
    deliver(
        &us,
        vec![
            agent_event("d2", "deny", "198.51.100.7", "team=infra"),
            agent_event("x1", "exfiltration", "203.0.113.50", "team=infra"),
        ],
    )
    .await;
    let cases: &[(&[&str], &[&str])] = &[
        (&[], &["d1", "p1", "d2", "x1"]),
        (&["--verdict", "deny"], &["d1", "d2"]),
        (&["--verdict", "dropped"], &["d1", "p1", "d2"]),
        (&["--verdict", "exfiltration"], &["x1"]),
        (&["--region", "us"], &["d2", "x1"]),
        (&["--to", "203.0.113.0/24"], &["d1", "x1"]),
        (&["--workload", "team=ml"], &["d1", "p1"]),
        (&["--workload", "team=ml,job=train"], &["d1"]),
        (&["--node", &eu.node_id], &["d1", "p1"]),
        (&["--verdict", "deny", "--region", "eu"], &["d1"]),
        // The newest two: the second delivery.
        (&["--last", "2"], &["d2", "x1"]),
    ];
    for (args, expected) in cases {
        let mut got = observed(&server, args).await;
        got.sort();
        let mut expected = expected.to_vec();
        expected.sort();
        assert_eq!(got, expected, "observe {args:?}");
    }
    // One flow in full, as JSON and as a table row.
    let out = server.cli(&["observe", "-o", "json", "--verdict", "deny", "--region", "eu"]).await;
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let f = &line["flow"];
    assert_eq!((f["verdict"].as_str(), f["traffic_direction"].as_str()), (Some("DROPPED"), Some("EGRESS")));
    assert_eq!((f["policy"].as_str(), f["rule"].as_str()), (Some("job-eu"), Some("no-exfil")));
    assert_eq!(f["source"]["labels"]["team"], "ml");
    assert_eq!(
        (f["destination"]["ip"].as_str(), f["destination"]["port"].as_u64()),
        (Some("203.0.113.9"), Some(443))
    );
    assert_eq!((f["node_id"].as_str(), f["region"].as_str()), (Some(eu.node_id.as_str()), Some("eu")));
    let table =
        String::from_utf8(server.cli(&["observe", "--verdict", "deny", "--region", "eu"]).await.stdout)
            .unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("TIME") && lines[0].contains("POLICY/RULE"), "{table}");
    assert!(
        lines[1].contains("DROPPED")
            && lines[1].contains("203.0.113.9:443")
            && lines[1].contains("job-eu/no-exfil"),
        "{table}"
    );
    // A bad filter is a usage error.
    assert_eq!(server.cli(&["observe", "--to", "nowhere"]).await.status.code(), Some(64));

    // -f: new denials as they are delivered, nothing else.
    let mut child = Command::new(ringfence_bin())
        .args(["--server", &server.base, "--ca", server.ca_path.to_str().unwrap()])
        .args(["--admin-token-file", server.admin_token_path.to_str().unwrap()])
        .args(["observe", "-f", "-o", "json", "--verdict", "deny", "--last", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    server.wait_for_metric("ringfence_observe_streams", 1.0).await;
    deliver(
        &eu,
        vec![
            agent_event("d3", "deny", "203.0.113.10", "team=ml"),
            agent_event("p2", "plaintext-drop", "198.51.100.21", "team=ml"),
        ],
    )
    .await;
    deliver(&us, vec![agent_event("d4", "deny", "198.51.100.8", "team=infra")]).await;
    let mut followed = Vec::new();
    while followed.len() < 2 {
        let line = rx.recv_timeout(Duration::from_secs(15)).expect("followed flows arrive");
        match serde_json::from_str::<ObserveLine>(&line).unwrap() {
            ObserveLine::Flow(f) => followed.push(f.event_id),
            ObserveLine::LostEvents(n) => panic!("{n} events lost"),
        }
    }
    assert_eq!(followed, ["d3", "d4"]);
    let _ = child.kill();
    let _ = child.wait();
    server.stop().await;
}

crate::on_both_backends!(observe_filters_on_the_server_and_follows);

/// Allow verdicts on their own path (`POST /v1/flows`).
mod live {
    use super::*;

    /// (audit records, stored events) now.
    async fn stored_counts(server: &TestServer) -> (usize, usize) {
        let audit = server.cli(&["audit", "export"]).await.stdout;
        let alerts = server.cli(&["alerts", "--limit", "1000", "--json"]).await.stdout;
        let alerts: serde_json::Value = serde_json::from_slice(&alerts).unwrap();
        (
            audit.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count(),
            alerts["alerts"].as_array().unwrap().len(),
        )
    }

    /// Allow verdicts (`POST /v1/flows`) reach `observe --verdict allow`, live and from memory, but
    /// are neither stored nor audited; other kinds are refused there; reported drops are counted.
    async fn live_allows_are_shown_not_stored(backend: Backend) {
        let server = TestServer::start(backend).await;
        let eu = server.agent("eu", &[], "lv-a").await;
        deliver(&eu, vec![agent_event("d1", "deny", "203.0.113.9", "team=ml")]).await;
        let before = stored_counts(&server).await;
        let allow = |id: &str| {
            let mut e = agent_event(id, "allow", "198.51.100.30", "team=ml");
            e.severity = "info".into();
            e
        };
        let resp = eu
            .post("/v1/flows", &LiveFlowBatch { flows: vec![allow("a1"), allow("a2")], dropped: 3 })
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
        assert_eq!(observed(&server, &["--verdict", "allow"]).await, ["a1", "a2"]);
        assert_eq!(
            observed(&server, &["--last", "2"]).await,
            ["a1", "a2"],
            "the newest flows, stored or not"
        );
        let refused =
            LiveFlowBatch { flows: vec![agent_event("d2", "deny", "203.0.113.9", "team=ml")], dropped: 0 };
        assert_eq!(eu.post("/v1/flows", &refused).await.unwrap().status(), 400, "only allows travel there");
        server.wait_for_metric("ringfence_live_flows_dropped_total", 3.0).await;
        server.wait_for_metric("ringfence_live_flows_total", 2.0).await;
        assert_eq!(stored_counts(&server).await, before, "allows are neither stored nor audited");
        server.stop().await;
    }

    crate::on_both_backends!(live_allows_are_shown_not_stored);
}
