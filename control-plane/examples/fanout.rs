//! Fan-out benchmark: N simulated agents (one process, one HTTPS client each) long-poll one
//! control plane; measures the time from `policy apply` until every agent has received, verified
//! and acknowledged the new bundle (p50, p99, max), then the event ingest rate.
//!
//! `cargo run --release -p ringfence-control --example fanout -- [AGENTS] [EVENTS] [DB_URL]`
//! (defaults: 1000 agents, 20000 events, SQLite in a temp directory). Talks only to 127.0.0.1.

mod sim;

use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use ringfence_proto::api::{BundleAck, Event, EventBatch, PolicyApplyRequest, Selector};
use ringfence_proto::SignedBundle;
use tokio::sync::mpsc;

fn policy(cidr: &str) -> String {
    format!("apiVersion: ringfence.dev/v1\nkind: EgressPolicy\nmetadata: {{name: fanout}}\nspec:\n  defaultAction: deny\n  egress:\n    - {{name: web, action: allow, to: {{cidrs: [{cidr}]}}}}\n")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let agents: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let events: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let server = sim::Server::start(args.get(3).map(String::as_str), &[]).await;
    let (base, admin, admin_token) = (&server.base, &server.admin, &server.admin_token);
    let clients = server.enroll(agents, "eu").await;

    // Every agent long-polls and acks; reports (policy version, when acked).
    let (tx, mut rx) = mpsc::unbounded_channel::<(u64, Instant)>();
    for (c, pinned) in &clients {
        let (c, pinned, base, tx) = (c.clone(), *pinned, base.clone(), tx.clone());
        tokio::spawn(async move {
            let mut after = 0;
            loop {
                let Ok(resp) = c.get(format!("{base}/v1/bundle?after={after}&wait=60")).send().await else {
                    return;
                };
                if resp.status() != StatusCode::OK {
                    continue;
                }
                let signed: SignedBundle = resp.json().await.unwrap();
                let bundle = signed.verify(&pinned, after).expect("bundle verifies");
                after = bundle.version;
                let ack = BundleAck {
                    bundle_version: bundle.version,
                    policy_version: bundle.policy_version,
                    applied: true,
                    error: None,
                };
                c.post(format!("{base}/v1/ack")).json(&ack).send().await.unwrap();
                let _ = tx.send((bundle.policy_version, Instant::now()));
            }
        });
    }
    let apply = |cidr: &str| {
        let req = PolicyApplyRequest {
            policy_yaml: policy(cidr),
            selector: Selector::default(),
            author: Some("bench".into()),
            comment: None,
            strict: false,
        };
        admin.post(format!("{base}/v1/policies")).bearer_auth(admin_token).json(&req).send()
    };
    for (round, cidr) in ["198.51.100.0/24", "203.0.113.0/24", "192.0.2.0/24"].iter().enumerate() {
        let version = round as u64 + 1;
        let t0 = Instant::now();
        assert!(apply(cidr).await.unwrap().status().is_success());
        let mut latencies = Vec::with_capacity(agents);
        while latencies.len() < agents {
            let (v, at) = tokio::time::timeout(Duration::from_secs(60), rx.recv())
                .await
                .expect("all agents within 60 s")
                .unwrap();
            if v == version {
                latencies.push(at - t0);
            }
        }
        latencies.sort();
        let label = if round == 0 { "first policy (warm-up)" } else { "policy change" };
        println!(
            "{label}: {agents} agents acknowledged: p50 {:.0?}, p99 {:.0?}, max {:.0?}",
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            latencies[agents - 1]
        );
    }

    // Event ingest: batches of 100 from all agents at once.
    let per_agent = events.div_ceil(agents);
    let t0 = Instant::now();
    let mut sending = Vec::new();
    for (i, (c, _)) in clients.iter().enumerate() {
        let (c, base) = (c.clone(), base.clone());
        sending.push(tokio::spawn(async move {
            let all: Vec<Event> = (0..per_agent)
                .map(|j| Event {
                    id: format!("{i}-{j}"),
                    kind: "deny".into(),
                    time_ms: ringfence_proto::now_ms(),
                    severity: "warning".into(),
                    summary: "denied".into(),
                    details: serde_json::json!({"port": 443}),
                })
                .collect();
            for chunk in all.chunks(100) {
                let resp = c
                    .post(format!("{base}/v1/events"))
                    .json(&EventBatch { events: chunk.to_vec() })
                    .send()
                    .await
                    .unwrap();
                assert!(resp.status().is_success());
            }
        }));
    }
    for s in sending {
        s.await.unwrap();
    }
    let total = per_agent * agents;
    let secs = t0.elapsed().as_secs_f64();
    println!("event ingest: {total} events in {secs:.2} s = {:.0} events/s", total as f64 / secs);
    flood(&clients, base).await;
    server.running.stop().await;
}

fn event(id: String, kind: &str) -> Event {
    Event {
        id,
        kind: kind.into(),
        time_ms: ringfence_proto::now_ms(),
        severity: "critical".into(),
        summary: format!("{kind} from the benchmark"),
        details: serde_json::json!({"port": 443}),
    }
}

/// Event ingest under a flood: 10 nodes send batches of 500 events as fast as they can (ignoring
/// Retry-After) while a well-behaved node sends one alert every 100 ms; the alert's latency from
/// sending to stored (the answer comes after the commit).
async fn flood(clients: &[(Client, ed25519_dalek::VerifyingKey)], base: &str) {
    const FLOODERS: usize = 10;
    let duration = Duration::from_secs(10);
    let started = Instant::now();
    let mut flooders = Vec::new();
    for (i, (c, _)) in clients.iter().skip(1).take(FLOODERS).enumerate() {
        let (c, base) = (c.clone(), base.to_owned());
        flooders.push(tokio::spawn(async move {
            let (mut stored, mut refused, mut batch) = (0usize, 0usize, 0usize);
            while started.elapsed() < duration {
                batch += 1;
                let events = (0..500).map(|j| event(format!("flood-{i}-{batch}-{j}"), "deny")).collect();
                let resp =
                    c.post(format!("{base}/v1/events")).json(&EventBatch { events }).send().await.unwrap();
                match resp.status() {
                    StatusCode::OK => stored += 500,
                    StatusCode::TOO_MANY_REQUESTS => refused += 1,
                    other => panic!("flood batch: {other}"),
                }
            }
            (stored, refused)
        }));
    }
    let honest = clients[0].0.clone();
    let mut latencies = Vec::new();
    let mut n = 0;
    while started.elapsed() < duration {
        n += 1;
        let t = Instant::now();
        let resp = honest
            .post(format!("{base}/v1/events"))
            .json(&EventBatch { events: vec![event(format!("alert-{n}"), "exfiltration")] })
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "the well-behaved node's alert");
        latencies.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (mut stored, mut refused) = (0, 0);
    for f in flooders {
        let (s, r) = f.await.unwrap();
        (stored, refused) = (stored + s, refused + r);
    }
    latencies.sort();
    println!(
        "flood ingest: {FLOODERS} nodes flooding for {:.0} s: {stored} events stored ({:.0}/s), {refused} batches refused (429); well-behaved node's alert-to-stored latency over {} alerts: p50 {:.0?}, p99 {:.0?}, max {:.0?}",
        duration.as_secs_f64(),
        stored as f64 / duration.as_secs_f64(),
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1]
    );
}
