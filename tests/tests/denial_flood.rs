//! Problem 3 of the fleet-hardening issue: a workload floods denied `sendto()` for 60 s on a node
//! under a control plane (SQLite, then PostgreSQL). The agent's memory stays under 64 MiB, the
//! control plane gets at most one record per (cgroup, destination, port, rule) per 10 s interval
//! (with the count), and an exfiltration alert raised during the flood is delivered exactly
//! once. Run as root, serially.
use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use ringfence_tests::{
    agent_bin, policy_head_with, postgres::PgCluster, procfs::status_kb, AgentProc, ControlPlane, Enforced,
};
use serde_json::Value;

/// Flood targets (denied) and the exfiltration destination (allowed, not an approved sink).
const FLOOD: [&str; 2] = ["203.0.113.7", "203.0.113.8"];
const ELSEWHERE: &str = "203.0.113.5";
const MB: u64 = 1_000_000;
const FLOOD_FOR: Duration = Duration::from_secs(60);
const RSS_LIMIT_KB: u64 = 64 * 1024;
/// How long after the flood its aggregation windows are all spooled: a window ends 10 s after it
/// opens, and ended windows are spooled at the next flush, every 2.5 s.
const WINDOWS_CLOSED: Duration = Duration::from_millis(12_500);
/// A port only the marker denial goes to: a new aggregation key.
const MARKER_PORT: u16 = 9;

fn policy() -> String {
    let exfil = "  exfiltration:\n    approvedSinks: { cidrs: [198.51.100.10/32] }\n    bulk: { bytes: 100MB, window: 10m }\n";
    policy_head_with("flood", "enforce", "allow", exfil)
        + &format!(
            "    - name: no-flood\n      action: deny\n      to: {{ cidrs: [{}/32, {}/32] }}\n",
            FLOOD[0], FLOOD[1]
        )
}

fn stored(cp: &ControlPlane, node: &str) -> Vec<Value> {
    let list = cp.cli_json(&["alerts", "--limit", "10000"]);
    list["alerts"].as_array().expect("alerts").iter().filter(|e| e["node_id"] == node).cloned().collect()
}

fn flood_case(name: &str, db: Option<String>) {
    let mut e = Enforced::prepare_with_hosts(name, &[FLOOD[0], FLOOD[1]], &[443], "");
    e.packet_path = true;
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let cp = ControlPlane::start_in_with_db(name, e.lab.node_ns(), ([127, 0, 0, 1], port).into(), db);
    cp.apply(&policy(), "");
    let state = e.dir().join("state");
    let node = cp.enroll_from("eu", &state, Some(e.lab.node_ns()));
    let mut args: Vec<std::ffi::OsString> = vec!["run".into(), "--control".into(), "--cgroup".into()];
    args.extend([
        e.lab.cgroup_path().into(),
        "--bpffs".into(),
        e.bpffs().into(),
        "--state-dir".into(),
        state.into(),
    ]);
    args.extend(["--watch-interval".into(), "0.2".into(), "--interface".into(), e.lab.veth_names().0.into()]);
    let mut command = e.lab.node_ns().command(agent_bin());
    // One log line per verdict would be a flood of its own: verdict lines off, the rest on.
    command.env("RUST_LOG", "info,ringfence::event=warn");
    let agent = AgentProc::spawn_command(command, &args, false);
    agent.wait_for_message("enforcing", Duration::from_secs(60));
    let pid = agent.pid() as u32;
    e.agent = Some(agent);

    let duration = FLOOD_FOR.as_millis().to_string();
    let targets: Vec<String> =
        FLOOD.iter().flat_map(|d| [format!("udp:{d}:53:deny"), format!("udp:{d}:5353:deny")]).collect();
    let mut probe_args = vec!["loop", "--duration-ms", &duration, "--interval-ms", "0"];
    for t in &targets {
        probe_args.extend(["--target", t]);
    }
    let floods: Vec<_> = (0..2).map(|_| e.lab.spawn_probe(&probe_args)).collect();
    let started = Instant::now();
    let (mut peak, mut exfil) = (0u64, None);
    while started.elapsed() < FLOOD_FOR {
        peak = peak.max(status_kb(pid, "VmRSS"));
        if exfil.is_none() && started.elapsed() >= Duration::from_secs(20) {
            // The upload an exfiltration alert must report, in the middle of the flood.
            let (bytes, rate) = ((150 * MB).to_string(), (300 * MB).to_string());
            exfil =
                Some(e.lab.spawn_probe(&["stream", ELSEWHERE, "443", "--bytes", &bytes, "--rate", &rate]));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let mut denied = 0u64;
    for f in floods {
        let out = f.wait_with_output().expect("flood probe");
        let report: Value = serde_json::from_slice(&out.stdout).expect("loop report");
        denied += report["targets"]
            .as_array()
            .expect("targets")
            .iter()
            .map(|t| t["eperm"].as_u64().unwrap_or(0))
            .sum::<u64>();
    }
    // The flood probes exited: no denial after this.
    let flood_end = Instant::now();
    let upload = exfil.expect("upload started").wait_with_output().expect("upload");
    assert!(upload.status.success(), "upload: {}", String::from_utf8_lossy(&upload.stderr));
    peak = peak.max(status_kb(pid, "VmRSS"));
    println!("{name}: {denied} denied sendto() in {FLOOD_FOR:?}; agent peak RSS {} MiB", peak / 1024);
    assert!(denied > 10_000, "the flood was a flood: {denied}");
    assert!(peak < RSS_LIMIT_KB, "agent RSS {peak} kB");

    // The flood's last windows end 10 s after they open and are spooled at the agent's next flush
    // (every 2.5 s): the agent's own bound, after which the spool holds every flood record. Then a
    // denial of a new key is spooled behind them, and the lane is delivered in order: once the
    // control plane has that marker, it has everything of the flood.
    std::thread::sleep(WINDOWS_CLOSED.saturating_sub(flood_end.elapsed()));
    assert!(e.lab.udp(FLOOD[0], MARKER_PORT).is_eperm(), "the marker sendto is denied");
    let is_marker = |r: &Value| r["details"]["port"] == MARKER_PORT;
    let deadline = Instant::now() + Duration::from_secs(30);
    let records = loop {
        let records = stored(&cp, &node);
        if records.iter().any(is_marker) {
            break records.into_iter().filter(|r| !is_marker(r)).collect::<Vec<_>>();
        }
        assert!(Instant::now() < deadline, "the marker denial was not delivered within 30 s");
        std::thread::sleep(Duration::from_millis(200));
    };
    let exfiltration: Vec<&Value> = records.iter().filter(|r| r["kind"] == "exfiltration").collect();
    assert_eq!(exfiltration.len(), 1, "the alert raised during the flood, delivered once: {exfiltration:?}");
    assert_eq!(exfiltration[0]["severity"], "critical");
    assert_eq!(e.agent().count("exfiltration alert"), 1);
    let mut by_key: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    for r in records.iter().filter(|r| r["kind"] == "deny") {
        let d = &r["details"];
        let key = format!("{}|{}|{}|{}", d["cgroup_id"], d["dst"], d["port"], d["rule"]);
        by_key
            .entry(key)
            .or_default()
            .push((d["emitted_unix_ms"].as_u64().expect("emitted"), d["count"].as_u64().expect("count")));
    }
    assert_eq!(by_key.len(), targets.len(), "one key per flood target: {:?}", by_key.keys());
    let mut counted = 0;
    for (key, list) in &mut by_key {
        list.sort();
        for pair in list.windows(2) {
            assert!(pair[1].0 - pair[0].0 >= 9_500, "{key}: two records {} ms apart", pair[1].0 - pair[0].0);
        }
        assert!(list.len() <= 9, "{key}: {} records for a 60 s flood", list.len());
        counted += list.iter().map(|(_, n)| n).sum::<u64>();
    }
    println!(
        "{name}: {} deny records for {counted} denials seen by the agent",
        by_key.values().map(Vec::len).sum::<usize>()
    );
    assert!(counted > 0 && counted <= denied, "{counted} counted, {denied} denied");
}

#[test]
fn denial_flood_keeps_agent_memory_flat_and_alerts_delivered_sqlite() {
    flood_case("flood-sq", None);
}

#[test]
fn denial_flood_keeps_agent_memory_flat_and_alerts_delivered_postgres() {
    let cluster = PgCluster::start().unwrap_or_else(|e| panic!("{e}"));
    let db = cluster.create_database("flood").unwrap_or_else(|e| panic!("{e}"));
    flood_case("flood-pg", Some(db));
}
