//! Weight-exfiltration detection in the lab: the agent (packet path on the node's uplink) alerts
//! when a process in the enforced cgroup sends a checkpoint-sized volume to a destination that is
//! not an approved sink, and with `action: block` stops it. Run as root, serially.
use std::{
    process::{Child, Output},
    time::Duration,
};

use ringfence_tests::{
    policy_head_with,
    scrape::{http_get, prometheus_value, wait_for_increase},
    spool::spooled,
    AgentProc, Enforced,
};
use serde_json::Value;

const SINK: &str = "198.51.100.10";
const ELSEWHERE: &str = "203.0.113.5";
/// Where the many small flows go (another unapproved host).
const SMALL: &str = "203.0.113.6";
const MB: u64 = 1_000_000;
const ALERT: &str = "exfiltration alert";
const METRICS_ADDR: &str = "127.0.0.1:9470";

/// A policy allowing everything, with `exfil_lines` as `spec.exfiltration`.
fn policy(name: &str, exfil_lines: &str) -> String {
    policy_head_with(name, "enforce", "allow", &format!("  exfiltration:\n{exfil_lines}"))
        + "    - name: everything\n      action: allow\n      to: { cidrs: [0.0.0.0/0, \"::/0\"] }\n"
}

/// A packet-path scenario with state (spool) in its scratch dir and metrics on the node's
/// loopback.
fn start(name: &str, exfil_lines: &str) -> Enforced {
    let mut e = Enforced::prepare_with_hosts(name, &[SMALL], &[443], &policy(name, exfil_lines));
    e.packet_path = true;
    let state = e.dir().join("state");
    e.agent_args.extend(["--state-dir".into(), state.into(), "--metrics-listen".into(), METRICS_ADDR.into()]);
    e.start_agent();
    e
}

/// Streams `bytes` to `dst`:443 at `rate` bytes/s, marking the 150 MB point.
fn spawn_stream(e: &Enforced, dst: &str, bytes: u64, rate: u64, extra: &[&str]) -> Child {
    let (bytes, rate, mark) = (bytes.to_string(), rate.to_string(), (150 * MB).to_string());
    let mut args = vec!["stream", dst, "443", "--bytes", &bytes, "--rate", &rate, "--mark", &mark];
    args.extend_from_slice(extra);
    e.lab.spawn_probe(&args)
}

/// The stream's JSON lines.
fn stream_lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("stream line {l:?}: {e}")))
        .collect()
}

fn finish(child: Child, what: &str) -> (Output, Vec<Value>) {
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{what}: wait: {e}"));
    let lines = stream_lines(&out);
    (out, lines)
}

fn alerts(agent: &AgentProc) -> Vec<Value> {
    agent.lines().into_iter().filter(|v| v["message"] == ALERT).collect()
}

/// Waits until the detector polled `n` more times.
fn wait_polls(e: &Enforced, n: f64) {
    wait_for_increase(
        e.lab.node_ns(),
        METRICS_ADDR,
        "ringfence_exfil_polls_total",
        n,
        Duration::from_secs(20),
    );
}

/// The agent's metrics, read inside the node namespace.
fn scrape(e: &Enforced) -> String {
    http_get(e.lab.node_ns(), METRICS_ADDR, "/metrics")
}

fn metric(text: &str, series: &str) -> f64 {
    prometheus_value(text, series).unwrap_or_else(|| panic!("no {series} in metrics:\n{text}"))
}

#[test]
fn bulk_transfer_to_an_unapproved_host_alerts_within_a_second_and_approved_or_small_ones_do_not() {
    let exfil = "    approvedSinks: { cidrs: [198.51.100.10/32] }\n    bulk: { bytes: 150MB, window: 10m }\n";
    let e = start("exfil-bulk", exfil);
    let agent = e.agent();

    // 200 MB to the approved sink, then 30 flows of 2 MB to another host (60 MB in all): quiet.
    let (out, lines) = finish(spawn_stream(&e, SINK, 200 * MB, 400 * MB, &[]), "stream to sink");
    assert!(
        out.status.success(),
        "stream to the approved sink: {lines:?} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for i in 0..30 {
        e.lab
            .probe(&["tcp", SMALL, "443", "--bytes", &(2 * MB).to_string()])
            .assert_ok(&format!("small flow {i}"));
    }
    // Polls that saw the final counters.
    wait_polls(&e, 3.0);
    assert!(alerts(agent).is_empty(), "no alert for the approved sink or small flows: {:?}", alerts(agent));

    // 200 MB at 100 MB/s to an unapproved host: crosses 150 MB after ~1.5 s.
    let child = spawn_stream(&e, ELSEWHERE, 200 * MB, 100 * MB, &[]);
    let pid = child.id();
    let alert = agent.wait_for_message(ALERT, Duration::from_secs(15));
    let (out, lines) = finish(child, "stream elsewhere");
    assert!(out.status.success(), "alert action does not stop the transfer: {lines:?}");
    let mark = lines.iter().find(|l| l["mark"].is_u64()).unwrap_or_else(|| panic!("mark line: {lines:?}"));
    let latency = alert["unix_ms"].as_i64().expect("unix_ms") - mark["unix_ms"].as_i64().expect("mark time");
    println!("alert latency after crossing 150 MB: {latency} ms");
    assert!((0..=1000).contains(&latency), "alert {latency} ms after crossing: {alert}");
    assert_eq!(alert["kind"], "bulk", "{alert}");
    assert_eq!(alert["action"], "alert", "{alert}");
    assert_eq!(alert["destination"], ELSEWHERE, "{alert}");
    assert_eq!(alert["pid"].as_u64(), Some(u64::from(pid)), "the sending process: {alert}");
    assert_eq!(alert["comm"], "lab-probe", "{alert}");
    assert!(alert["cgroup_id"].as_u64().unwrap_or(0) > 0, "{alert}");
    assert!(alert["bytes"].as_u64().unwrap_or(0) >= 150 * MB, "{alert}");

    wait_polls(&e, 2.0);
    assert_eq!(alerts(agent).len(), 1, "one alert per destination: {:?}", alerts(agent));
    let spool = spooled(&e.dir().join("state"));
    assert_eq!(spool.len(), 1, "the alert is in the spool: {spool:?}");
    assert_eq!((&spool[0]["id"], &spool[0]["destination"]), (&alert["id"], &alert["destination"]));
    let text = scrape(&e);
    assert_eq!(metric(&text, "ringfence_exfil_alerts_total{kind=\"bulk\",action=\"alert\"}"), 1.0, "{text}");
}

#[test]
fn sending_the_size_of_a_fresh_checkpoint_names_the_file() {
    let mut e = Enforced::prepare("exfil-ckpt", &[443], "");
    let ckpt = e.dir().join("ckpt");
    std::fs::create_dir_all(&ckpt).expect("checkpoint dir");
    let exfil = format!(
        "    bulk: {{ bytes: 10GB, window: 10m }}\n    checkpoints: {{ paths: [{}], tolerance: 2% }}\n",
        ckpt.display()
    );
    std::fs::write(&e.policy, policy("exfil-ckpt", &exfil)).expect("write policy");
    e.packet_path = true;
    e.agent_args.extend([
        "--state-dir".into(),
        e.dir().join("state").into(),
        "--metrics-listen".into(),
        METRICS_ADDR.into(),
    ]);
    e.start_agent();
    let agent = e.agent();

    let size: u64 = 48 << 20;
    let file = ckpt.join("step-1200.safetensors");
    std::fs::File::create(&file).and_then(|f| f.set_len(size)).expect("write checkpoint");
    agent.wait_for("checkpoint file observed", Duration::from_secs(10), |v| {
        v["message"] == "checkpoint file observed" && v["path"] == file.display().to_string()
    });
    // Another size (to another host): no match.
    e.lab.probe(&["tcp", SINK, "443", "--bytes", &(size * 3 / 4).to_string()]).assert_ok("three quarters");
    // Polls past the 2 s a finished flow needs to settle, which would have matched it.
    wait_polls(&e, 6.0);
    assert!(alerts(agent).is_empty(), "{:?}", alerts(agent));
    e.lab
        .probe(&["tcp", ELSEWHERE, "443", "--bytes", &size.to_string(), "--timeout-ms", "10000"])
        .assert_ok("whole");
    let alert = agent.wait_for_message(ALERT, Duration::from_secs(10));
    assert_eq!(alert["kind"], "checkpoint", "{alert}");
    assert_eq!(alert["severity"], "critical", "{alert}");
    assert_eq!(alert["file"], file.display().to_string(), "{alert}");
    assert_eq!(alert["destination"], ELSEWHERE, "{alert}");
    assert_eq!(alert["port"], 443, "the flow matched: {alert}");
    assert!(alert["explanation"].as_str().is_some_and(|x| x.contains("step-1200.safetensors")), "{alert}");
}

#[test]
fn action_block_refuses_new_connections_and_stalls_the_transfer_until_released() {
    let exfil = "    bulk: { bytes: 150MB, window: 10m }\n    action: block\n    blockFor: 10m\n";
    let e = start("exfil-block", exfil);
    let agent = e.agent();

    let (out, lines) = finish(
        spawn_stream(&e, ELSEWHERE, 400 * MB, 50 * MB, &["--stall-ms", "2000"]),
        "stream to be blocked",
    );
    assert_eq!(out.status.code(), Some(3), "the transfer stalls: {lines:?}");
    let stalled = lines.last().expect("stall line");
    assert_eq!(stalled["stalled"], true, "{lines:?}");
    assert!(stalled["sent"].as_u64().unwrap_or(u64::MAX) < 400 * MB, "{stalled}");
    let alert = alerts(agent).pop().unwrap_or_else(|| panic!("an alert before the stall"));
    assert_eq!(
        (alert["action"].as_str(), alert["destination"].as_str()),
        (Some("block"), Some(ELSEWHERE)),
        "{alert}"
    );
    let cgroup = alert["cgroup_id"].as_u64().expect("cgroup id");

    e.lab.tcp(ELSEWHERE, 443).assert_eperm("a new connection to the blocked destination");
    agent.wait_for_event("the refusal", Duration::from_secs(5), |v| {
        v["dst"] == ELSEWHERE && v["verdict"] == "deny" && v["rule"] == "exfiltration-block"
    });
    e.lab.tcp(SINK, 443).assert_ok("other destinations stay open");

    let listed = e.agent_cli(&["blocks", "--json"]);
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    let blocks: Vec<Value> = serde_json::from_slice(&listed.stdout).expect("blocks JSON");
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    assert_eq!(
        (blocks[0]["cgroup_id"].as_u64(), blocks[0]["destination"].as_str()),
        (Some(cgroup), Some(ELSEWHERE))
    );
    assert!(blocks[0]["expires_in_secs"].as_u64().is_some_and(|s| s > 500 && s <= 600), "{blocks:?}");

    let released = e.agent_cli(&["release", "--destination", ELSEWHERE]);
    assert!(released.status.success(), "{}", String::from_utf8_lossy(&released.stderr));
    agent.wait_for_message("exfiltration block released", Duration::from_secs(5));
    e.lab.tcp(ELSEWHERE, 443).assert_ok("released");
    let status = e.status();
    assert!(status["counters"]["exfil_blocked"].as_u64().unwrap_or(0) >= 2, "{status}");
}
