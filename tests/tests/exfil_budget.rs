//! Exfiltration budgets enforced by the kernel (`spec.exfiltration.budgets`): a transfer to a
//! destination that is not an approved sink stops within 256 KiB past its budget, counted
//! byte-exactly at the receiver, at full veth speed and at 1 Gbit/s; the crossing raises one
//! alert within 100 ms; other destinations and approved sinks are unaffected; a spent budget
//! refuses new connections and survives an agent kill -9, a restart and a policy reload; IPv6
//! destinations have their own budgets; a relative budget (`0.01x checkpoint/24h`) follows the
//! largest checkpoint the agent has seen.
//! Run as root, serially.
use std::path::Path;
use std::time::Duration;

use ringfence_tests::{addrs::WORLD_V6, policy_head_with, spool::spooled, Enforced, Sink};
use serde_json::Value;

/// Not approved (two destinations) and approved, all in the world namespace.
const FIRST: &str = "203.0.113.5";
const SECOND: &str = "198.51.100.20";
const APPROVED: &str = "198.51.100.10";
const SINK_PORT: u16 = 9000;
const ALERT: &str = "exfiltration alert";
const SLACK: u64 = 256 << 10;
const WAIT: Duration = Duration::from_secs(20);
const METRICS_ADDR: &str = "127.0.0.1:9473";

/// The policy: `budgets`, and (for relative budgets) the checkpoint directory `ckpt` watched.
fn policy(name: &str, budgets: &str, ckpt: Option<&Path>) -> String {
    let watched =
        ckpt.map_or(String::new(), |d| format!("    checkpoints: {{ paths: [{}] }}\n", d.display()));
    let exfil = format!(
        "  exfiltration:\n    approvedSinks: {{ cidrs: [{APPROVED}/32] }}\n{watched}    budgets: {{ {budgets} }}\n"
    );
    policy_head_with(name, "enforce", "allow", &exfil)
        + "    - name: everything\n      action: allow\n      to: { cidrs: [0.0.0.0/0, \"::/0\"] }\n"
}

fn start(name: &str, budgets: &str) -> (Enforced, Sink) {
    start_watching(name, budgets, false)
}

/// [`start`], with a checkpoint directory (`<lab>/ckpt`) watched when `checkpoints`.
fn start_watching(name: &str, budgets: &str, checkpoints: bool) -> (Enforced, Sink) {
    let mut e = Enforced::prepare(name, &[443], "");
    let ckpt = checkpoints.then(|| e.dir().join("ckpt"));
    if let Some(d) = &ckpt {
        std::fs::create_dir_all(d).expect("checkpoint dir");
    }
    std::fs::write(&e.policy, policy(name, budgets, ckpt.as_deref())).expect("policy");
    // Watching checkpoints needs the packet path's flow counters.
    e.packet_path = checkpoints;
    let state = e.dir().join("state");
    e.agent_args.extend(["--state-dir".into(), state.into(), "--metrics-listen".into(), METRICS_ADDR.into()]);
    e.start_agent();
    let sink = Sink::start(&e.lab, SINK_PORT, None);
    (e, sink)
}

fn stalled(v: &Value) -> bool {
    v["stalled"] == true
}

fn budget_alerts(e: &Enforced) -> Vec<Value> {
    e.agent().lines().into_iter().filter(|v| v["message"] == ALERT && v["kind"] == "budget").collect()
}

/// Asserts a transfer stopped within [`SLACK`] past `budget` (and not long before it: the
/// kernel counts IP bytes, the receiver payload, about 4% apart).
fn assert_stopped_at(received: u64, budget: u64, what: &str) {
    assert!(received <= budget + SLACK, "{what}: {received} bytes received, budget {budget} (+{SLACK})");
    assert!(received >= budget - budget / 10 - SLACK, "{what}: stopped early at {received} of {budget}");
    eprintln!(
        "{what}: received {received}, budget {budget}, past budget {}",
        received as i64 - budget as i64
    );
}

/// The budget alert for `kind` and `destination` (waits for it); checks its latency.
fn alert_for(e: &Enforced, kind: &str, destination: &str) -> Value {
    let a = e.agent().wait_for(&format!("{kind} budget alert for {destination}"), WAIT, |v| {
        v["message"] == ALERT && v["budget"] == kind && v["destination"] == destination
    });
    let latency = a["latency_ms"].as_f64().expect("latency");
    eprintln!("{kind} alert latency {latency:.2} ms");
    assert!(latency < 100.0, "alert {latency} ms after the crossing: {a}");
    assert_eq!((a["kind"].as_str(), a["action"].as_str()), (Some("budget"), Some("block")), "{a}");
    a
}

fn refused(e: &Enforced, addr: &str) -> bool {
    e.lab.probe(&["tcp", addr, &SINK_PORT.to_string(), "--timeout-ms", "2000"]).is_eperm()
}

#[test]
fn a_destination_budget_stops_transfers_at_full_speed_and_at_1_gbit_per_destination() {
    const BUDGET: u64 = 8 << 20;
    let (e, sink) = start("budget-dest", "perDestination: 8MiB/1h, total: 1GiB/1h");

    // Full veth speed (unpaced).
    let r = e.lab.upload(FIRST, SINK_PORT, 64 << 20, None);
    assert!(stalled(&r), "the kernel stops it: {r}");
    let first = sink.settled(Duration::from_millis(300), WAIT).tcp;
    assert_stopped_at(first, BUDGET, "full speed");
    alert_for(&e, "perDestination", FIRST);
    assert!(refused(&e, FIRST), "a new connection to the spent destination is refused");

    // Another destination has its own budget: at about 1 Gbit/s it stops the same way.
    let r = e.lab.upload(SECOND, SINK_PORT, 64 << 20, Some(125_000_000));
    assert!(stalled(&r), "{r}");
    let second = sink.settled(Duration::from_millis(300), WAIT).tcp - first;
    assert_stopped_at(second, BUDGET, "1 Gbit/s");
    alert_for(&e, "perDestination", SECOND);

    // The approved sink is never counted: four times the budget passes.
    let r = e.lab.upload(APPROVED, 443, 4 * BUDGET, None);
    assert_eq!(
        (r["ok"].as_bool(), r["reply"].as_str()),
        (Some(true), Some(&*format!("pong {}", 4 * BUDGET))),
        "{r}"
    );
    assert_eq!(budget_alerts(&e).len(), 2, "one alert per crossing: {:?}", budget_alerts(&e));
    let spooled: Vec<Value> =
        spooled(&e.dir().join("state")).into_iter().filter(|r| r["kind"] == "budget").collect();
    assert_eq!(spooled.len(), 2, "both alerts are in the spool: {spooled:?}");
    let status = e.agent_cli(&["status", "--json"]);
    assert!(status.status.success(), "{status:?}");
}

#[test]
fn a_spent_total_budget_survives_kill_9_restart_and_reload() {
    const TOTAL: u64 = 12 << 20;
    let (mut e, sink) = start("budget-total", "perDestination: 1GiB/1h, total: 12MiB/1h");

    let r = e.lab.upload(FIRST, SINK_PORT, 8 << 20, None);
    assert!(!stalled(&r) && r["sent"] == 8 << 20, "under the total: {r}");
    let r = e.lab.upload(SECOND, SINK_PORT, 64 << 20, None);
    assert!(stalled(&r), "{r}");
    let both = sink.settled(Duration::from_millis(300), WAIT).tcp;
    assert_stopped_at(both, TOTAL, "total over two destinations");
    alert_for(&e, "total", SECOND);
    assert!(refused(&e, FIRST) && refused(&e, SECOND), "every non-approved destination is refused");

    // kill -9: the programs and their pinned counters stay; nothing new gets out.
    e.agent.as_mut().expect("agent").kill9();
    assert!(refused(&e, FIRST), "refused while no agent runs");
    e.start_agent();
    assert!(refused(&e, SECOND), "refused after a restart");
    // A reload (a different budget for DNS: the policy changes, the counters stay).
    e.replace_policy(&policy(
        "budget-total",
        "perDestination: 1GiB/1h, total: 12MiB/1h, dns: 32MiB/1h",
        None,
    ));
    assert!(refused(&e, FIRST), "refused after a reload");
    assert_eq!(sink.received().tcp, both, "nothing more arrived");
    let r = e.lab.upload(APPROVED, 443, 16 << 20, None);
    assert_eq!(r["ok"], true, "the approved sink still works: {r}");
    assert_eq!(budget_alerts(&e).len(), 0, "the restarted agent raises no second alert");
}

#[test]
fn an_ipv6_destination_budget_stops_the_transfer_and_leaves_other_destinations_alone() {
    const BUDGET: u64 = 8 << 20;
    let (e, sink) = start("budget-v6", "perDestination: 8MiB/1h, total: 1GiB/1h");
    let (spent, other) = (WORLD_V6[0], WORLD_V6[1]);

    let r = e.lab.upload(spent, SINK_PORT, 64 << 20, None);
    assert!(stalled(&r), "the kernel stops it: {r}");
    let got = sink.settled(Duration::from_millis(300), WAIT).tcp;
    assert_stopped_at(got, BUDGET, "IPv6 full speed");
    alert_for(&e, "perDestination", spent);
    assert!(refused(&e, spent), "a new connection to the spent IPv6 destination is refused");

    // Another IPv6 destination still has its whole budget.
    let r = e.lab.upload(other, SINK_PORT, BUDGET / 2, None);
    assert!(!stalled(&r) && r["sent"] == BUDGET / 2, "{r}");
    let after = sink.settled(Duration::from_millis(300), WAIT).tcp;
    assert_eq!(after - got, BUDGET / 2, "byte-exact at the receiver");
    assert_eq!(budget_alerts(&e).len(), 1, "{:?}", budget_alerts(&e));
}

/// Creates a (sparse) checkpoint file of `bytes` and waits until the agent gave the kernel its
/// size.
fn checkpoint(e: &Enforced, name: &str, bytes: u64) {
    let file = e.dir().join("ckpt").join(name);
    std::fs::File::create(&file).and_then(|f| f.set_len(bytes)).expect("write checkpoint");
    e.agent().wait_for(&format!("the {bytes}-byte checkpoint seen"), WAIT, |v| {
        v["message"] == "exfiltration budgets: largest checkpoint seen" && v["bytes"] == bytes
    });
}

#[test]
fn a_relative_budget_follows_the_largest_checkpoint_seen() {
    const CHECKPOINT: u64 = 800 << 20;
    let (e, sink) = start_watching("budget-rel", "perDestination: 0.01x checkpoint/24h", true);

    checkpoint(&e, "model-00001-of-00001.safetensors", CHECKPOINT);
    let r = e.lab.upload(FIRST, SINK_PORT, 64 << 20, None);
    assert!(stalled(&r), "the kernel stops it: {r}");
    let first = sink.settled(Duration::from_millis(300), WAIT).tcp;
    assert_stopped_at(first, CHECKPOINT / 100, "0.01x an 800 MiB checkpoint");
    alert_for(&e, "perDestination", FIRST);

    // A larger checkpoint raises the budget derived from it: another destination gets 0.01x that.
    checkpoint(&e, "model-large.safetensors", 2 * CHECKPOINT);
    let r = e.lab.upload(SECOND, SINK_PORT, 64 << 20, None);
    assert!(stalled(&r), "{r}");
    let second = sink.settled(Duration::from_millis(300), WAIT).tcp - first;
    assert_stopped_at(second, 2 * CHECKPOINT / 100, "0.01x a 1600 MiB checkpoint");
    alert_for(&e, "perDestination", SECOND);
    assert!(refused(&e, FIRST) && refused(&e, SECOND), "both spent destinations are refused");
}
