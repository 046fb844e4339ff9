//! Fan-out benchmark: N simulated agents (one process, one HTTPS client each) long-poll one
//! control plane; measures the time from `policy apply` until every agent has received, verified
//! and acknowledged the new bundle (p50, p99, max), then the event ingest rate.
//!
//! `cargo run --release -p ringfence-control --example fanout -- [AGENTS] [EVENTS] [DB_URL]`
//! (defaults: 1000 agents, 20000 events, SQLite in a temp directory). Talks only to 127.0.0.1.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Certificate, Client, Identity, StatusCode};
use ringfence_control::ServeArgs;
use ringfence_proto::api::{
    BundleAck, EnrollRequest, EnrollResponse, Event, EventBatch, PolicyApplyRequest, Selector, TokenRequest,
    TokenResponse,
};
use ringfence_proto::SignedBundle;
use tokio::sync::{mpsc, Semaphore};

/// Sends `body` as JSON and reads the JSON answer (panics on any failure: a benchmark).
async fn post_json<B: serde::Serialize, T: serde::de::DeserializeOwned>(
    req: reqwest::RequestBuilder,
    body: &B,
) -> T {
    req.json(body).send().await.unwrap().error_for_status().unwrap().json().await.unwrap()
}

/// A client; simulated agent `i` connects from its own loopback address (as 1000 nodes would
/// from theirs: the control plane's per-source connection limit is about nodes, not the test).
fn client(ca: &str, identity: Option<Identity>, agent: Option<usize>) -> Client {
    let local = agent.map(|i| std::net::IpAddr::from([127, 1, (i / 250) as u8, (i % 250 + 1) as u8]));
    let mut b = Client::builder()
        .local_address(local)
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(Certificate::from_pem(ca.as_bytes()).unwrap())
        .min_tls_version(reqwest::tls::Version::TLS_1_3)
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(120));
    if let Some(i) = identity {
        b = b.identity(i);
    }
    b.build().unwrap()
}

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
    let dir = tempfile::tempdir().unwrap();
    let mut argv = vec!["--listen".to_owned(), "127.0.0.1:0".into(), "--state-dir".into()];
    argv.push(dir.path().join("state").display().to_string());
    if let Some(db) = args.get(3) {
        argv.extend(["--db".into(), db.clone()]);
    }
    let config = ServeArgs::from_flags(argv).unwrap().validate().unwrap();
    let running = ringfence_control::start(config).await.unwrap();
    let base = format!("https://127.0.0.1:{}", running.addr.port());
    let ca = std::fs::read_to_string(&running.ca_path).unwrap();
    let admin_token = std::fs::read_to_string(&running.admin_token_path).unwrap().trim().to_owned();
    let admin = client(&ca, None, None);

    // Enroll.
    let started = Instant::now();
    let limit = Arc::new(Semaphore::new(16));
    let mut enrolling = Vec::new();
    for i in 0..agents {
        let (admin, base, ca, admin_token, limit) =
            (admin.clone(), base.clone(), ca.clone(), admin_token.clone(), limit.clone());
        enrolling.push(tokio::spawn(async move {
            let _permit = limit.acquire().await.unwrap();
            let req = TokenRequest { region: "eu".into(), labels: Default::default(), ttl_seconds: None };
            let token: TokenResponse =
                post_json(admin.post(format!("{base}/v1/tokens")).bearer_auth(&admin_token), &req).await;
            let key = ringfence_proto::csr::generate(&format!("sim-{i}")).unwrap();
            let req = EnrollRequest {
                token: token.token,
                csr_pem: key.csr_pem,
                agent_version: None,
                hostname: None,
                wireguard: None,
            };
            let enrolled: EnrollResponse = post_json(admin.post(format!("{base}/v1/enroll")), &req).await;
            let identity =
                Identity::from_pem(format!("{}{}", enrolled.certificate_pem, key.key_pem).as_bytes())
                    .unwrap();
            (
                client(&ca, Some(identity), Some(i)),
                ringfence_proto::parse_public_key(&enrolled.bundle_signing_key).unwrap(),
            )
        }));
    }
    let mut clients = Vec::new();
    for e in enrolling {
        clients.push(e.await.unwrap());
    }
    println!("enrolled {agents} agents in {:.1?}", started.elapsed());

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
        admin.post(format!("{base}/v1/policies")).bearer_auth(&admin_token).json(&req).send()
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
    flood(&clients, &base).await;
    running.stop().await;
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
