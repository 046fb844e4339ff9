//! Live flow view benchmark: simulated agents deliver events at a fixed rate while the real
//! `ringfence observe -f -o json` binary follows the stream; checks that every delivered event
//! reaches it (count checked: none lost, none missing) and prints the rates.
//!
//! `cargo run --release -p ringfence-control --example observe_bench -- RINGFENCE_BIN [RATE]
//! [SECONDS] [NODES] [DB_URL]` (defaults: 10000 events/s, 10 s, 20 nodes, SQLite in a temp
//! directory). Exits 1 if the stream did not carry every event. Talks only to 127.0.0.1.

mod sim;

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringfence_proto::api::{Event, EventBatch};

/// Batches each node sends per second.
const BATCHES_PER_SECOND: u64 = 5;

fn event(node: usize, n: u64) -> Event {
    Event {
        id: format!("{node}-{n}"),
        kind: "deny".into(),
        time_ms: ringfence_proto::now_ms(),
        severity: "warning".into(),
        summary: format!("deny by no-exfil: pid 4242 (python) -> 203.0.113.{}:443", n % 250),
        details: serde_json::json!({
            "verdict": "deny", "rule": "no-exfil", "policy": "job-eu", "pid": 4242, "comm": "python",
            "cgroup_id": 77, "dst": format!("203.0.113.{}", n % 250), "port": 443, "protocol": "tcp",
            "hook": "rf_connect4", "workload": format!("job_{node}"), "labels": "team=ml,job=train", "count": 1,
        }),
    }
}

async fn metric(server: &sim::Server, name: &str) -> f64 {
    let text =
        server.admin.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
    text.lines().find_map(|l| l.strip_prefix(&format!("{name} "))).and_then(|v| v.parse().ok()).unwrap_or(0.0)
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bin =
        args.get(1).expect("usage: observe_bench RINGFENCE_BIN [RATE] [SECONDS] [NODES] [DB_URL]").clone();
    let rate: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let seconds: u64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(10);
    let nodes: usize = args.get(4).and_then(|a| a.parse().ok()).unwrap_or(20);
    let per_batch = (rate / BATCHES_PER_SECOND / nodes as u64).max(1);
    let per_node_rate = (per_batch * BATCHES_PER_SECOND * 2).to_string();
    let server = sim::Server::start(args.get(5).map(String::as_str), &["--event-rate", &per_node_rate]).await;
    let clients = server.enroll(nodes, "eu").await;
    let dir = tempfile::tempdir().unwrap();
    let (ca, token) = (dir.path().join("ca.pem"), dir.path().join("admin.token"));
    std::fs::write(&ca, &server.ca).unwrap();
    std::fs::write(&token, &server.admin_token).unwrap();

    // The observer: the real CLI, following everything.
    let mut child = Command::new(&bin)
        .args([
            "--server",
            &server.base,
            "--ca",
            ca.to_str().unwrap(),
            "--admin-token-file",
            token.to_str().unwrap(),
        ])
        .args(["observe", "-f", "-o", "json", "--last", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{bin}: {e}"));
    let (flows, lost) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let stdout = child.stdout.take().unwrap();
    let (f, l) = (flows.clone(), lost.clone());
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("{\"flow\"") {
                f.fetch_add(1, Ordering::Relaxed);
            } else if let Some(n) = line.strip_prefix("{\"lost_events\":") {
                l.fetch_add(n.trim_end_matches('}').parse().unwrap_or(0), Ordering::Relaxed);
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(&server, "ringfence_observe_streams").await < 1.0 {
        assert!(Instant::now() < deadline, "the observer did not connect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Deliver at `rate` for `seconds`.
    let ticks = seconds * BATCHES_PER_SECOND;
    let t0 = Instant::now();
    let mut sending = Vec::new();
    for (i, (c, _)) in clients.iter().enumerate() {
        let (c, base) = (c.clone(), server.base.clone());
        sending.push(tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_millis(1000 / BATCHES_PER_SECOND));
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut accepted = 0u64;
            for tick in 0..ticks {
                interval.tick().await;
                let events = (0..per_batch).map(|j| event(i, tick * per_batch + j)).collect();
                let resp =
                    c.post(format!("{base}/v1/events")).json(&EventBatch { events }).send().await.unwrap();
                assert!(resp.status().is_success(), "{}", resp.status());
                let body: ringfence_proto::api::EventsAccepted = resp.json().await.unwrap();
                accepted += body.accepted.len() as u64;
            }
            accepted
        }));
    }
    let mut delivered = 0;
    for s in sending {
        delivered += s.await.unwrap();
    }
    let send_secs = t0.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(30);
    while flows.load(Ordering::Relaxed) + lost.load(Ordering::Relaxed) < delivered
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let drained = t0.elapsed().as_secs_f64() - send_secs;
    let (got, lost_n) = (flows.load(Ordering::Relaxed), lost.load(Ordering::Relaxed));
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "observe: {delivered} events delivered by {nodes} nodes in {send_secs:.2} s ({:.0} events/s, target {rate}); \
         the stream carried {got} flows ({:.0} flows/s), {lost_n} lost, {} missing; last flow {:.0} ms after the last delivery",
        delivered as f64 / send_secs,
        got as f64 / (send_secs + drained),
        delivered.saturating_sub(got),
        drained * 1000.0
    );
    server.running.stop().await;
    if got != delivered || lost_n != 0 {
        std::process::exit(1);
    }
}
