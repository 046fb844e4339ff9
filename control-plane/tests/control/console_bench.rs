//! `cargo xtask bench-console`: every console page loaded in Debian's chromium against a
//! control plane holding 1,000 nodes in 10 regions and 100,000 stored events (each with its
//! audit record, as ingest writes them); first contentful paint and time until the page's data
//! is shown, worst of three fresh loads. Fails if a page's first contentful paint takes 1 s or
//! more. Ignored by `cargo test` (it takes a minute); skipped without chromium.

use ringfence_control::db;
use ringfence_proto::api::Event;
use ringfence_tests::browser::{browser_missing, run_console, screenshot_dir, ConsoleRun};
use serde_json::json;

use crate::common::{policy_yaml, Backend, TestServer};

const NODES: usize = 1000;
const EVENTS: usize = 100_000;
const REGIONS: usize = 10;
const KINDS: &[&str] = &["deny", "plaintext-drop", "exfiltration", "audit-deny"];

async fn insert_nodes(server: &TestServer) {
    let now = ringfence_proto::now_ms();
    let mut tx = server.db().begin().await.unwrap();
    for i in 0..NODES {
        // Most enforcing, some on an old policy, some silent for an hour.
        let seen = if i % 50 == 0 { now - 3_600_000 } else { now - (i as i64 % 60) * 1000 };
        let applied = if i % 20 == 1 { 0 } else { 1 };
        sqlx::query(
            "INSERT INTO nodes (id, region, labels, hostname, agent_version, applied_policy_version, applied_bundle_version, \
             geo_db_version, last_seen_ms, enrolled_ms, cert_not_after_ms, generation) \
             VALUES ($1, $2, '{}', $3, '0.1.0', $4, $4, 'GeoLite2-Country 2026-11-28', $5, $6, $7, 0)",
        )
        .bind(format!("n-bench-{i:04}"))
        .bind(format!("region-{}", i % REGIONS))
        .bind(format!("gpu-{i:04}"))
        .bind(applied)
        .bind(seen)
        .bind(now - 86_400_000)
        .bind(now + 20 * 3_600_000)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
}

fn event(i: usize, now: i64) -> Event {
    let kind = KINDS[i % KINDS.len()];
    let country = ["CN", "US", "DE", "RU", "BR"][i % 5];
    let details = json!({
        "dst": format!("203.0.113.{}", i % 250),
        "port": 443,
        "country": country,
        "bytes": if kind == "exfiltration" { (i as u64 % 97) * 10_000_000 } else { 0 },
        "count": 1 + i as u64 % 5,
        "workload": format!("job-{}", i % 300),
    });
    Event {
        id: format!("e-{i}"),
        kind: kind.into(),
        time_ms: now - (i as i64 * 86_400_000 / EVENTS as i64),
        severity: if kind == "exfiltration" { "critical" } else { "warning" }.into(),
        summary: format!("{kind} to {}", details["dst"]),
        details,
    }
}

async fn insert_events(server: &TestServer) {
    let now = ringfence_proto::now_ms();
    for chunk in (0..EVENTS).collect::<Vec<_>>().chunks(5000) {
        let mut tx = server.db().begin().await.unwrap();
        for node in 0..NODES {
            let events: Vec<Event> =
                chunk.iter().copied().filter(|i| i % NODES == node).map(|i| event(i, now)).collect();
            if events.is_empty() {
                continue;
            }
            let node_id = format!("n-bench-{node:04}");
            db::events::insert_many(&mut tx, &node_id, &events, now - 1000).await.unwrap();
            let summaries =
                events.iter().map(|e| json!({"node_id": node_id, "id": e.id, "kind": e.kind})).collect();
            db::audit::append_many(&mut tx, &format!("node:{node_id}"), "alert", summaries).await.unwrap();
        }
        tx.commit().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: cargo xtask bench-console"]
async fn console_bench() {
    if let Some(reason) = browser_missing() {
        return ringfence_tests::skip("console_bench", &reason);
    }
    let server = TestServer::start(Backend::Sqlite).await;
    insert_nodes(&server).await;
    // Applying a policy reloads the snapshot with the nodes.
    server.apply(&policy_yaml("fleet", "198.51.100.0/24"), "").await;
    insert_events(&server).await;
    let (base, token) = (server.base.clone(), server.admin_token.clone());
    let result = tokio::task::spawn_blocking(move || {
        let shots = screenshot_dir("bench");
        let run = ConsoleRun {
            url: &base,
            login: json!({"token": token}),
            expect: json!({"node_id": "n-bench-0001"}),
            shots: &shots,
            netns: None,
        };
        run_console("fcp", &run)
    })
    .await
    .unwrap()
    .unwrap_or_else(|e| panic!("{e}"));
    println!("console pages with {NODES} nodes and {EVENTS} events (worst of 3 loads):");
    println!("{:<10} {:>8} {:>12}", "page", "FCP ms", "data ms");
    let pages = result.as_object().expect("pages");
    for (page, r) in pages {
        let ms = |k: &str| r[k].as_f64().unwrap_or(f64::NAN);
        println!("{page:<10} {:>8.0} {:>12.0}", ms("fcp_ms_worst"), ms("data_ms_worst"));
    }
    for (page, r) in pages {
        let fcp = r["fcp_ms_worst"].as_f64().expect("fcp");
        assert!(fcp < 1000.0, "{page}: first contentful paint {fcp} ms");
    }
    server.stop().await;
}
