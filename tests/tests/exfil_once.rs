//! Exfiltration alerts that are right once: a checkpoint-sized upload raises one alert, and
//! nothing new after a policy reload, a block release or an agent restart (kill -9); an exact
//! checkpoint size still matches over a lossy link (retransmissions are not counted twice); a
//! transfer three times the size does not match; alerts raised after a restart name the process.
//! Run as root, serially.
use std::time::Duration;

use ringfence_tests::{policy_head_with, scrape::wait_for_increase, Enforced};
use serde_json::Value;

const ELSEWHERE: &str = "203.0.113.5";
const METRICS_ADDR: &str = "127.0.0.1:9471";
const ALERT: &str = "exfiltration alert";
const SIZE: u64 = 48 << 20;
const WAIT: Duration = Duration::from_secs(20);

fn policy(ckpt: &std::path::Path, block_for: &str) -> String {
    let exfil = format!(
        "  exfiltration:\n    bulk: {{ bytes: 200MB, window: 10m }}\n    checkpoints: {{ paths: [{}], tolerance: 2% }}\n    action: block\n    blockFor: {block_for}\n",
        ckpt.display()
    );
    policy_head_with("exfil-once", "enforce", "allow", &exfil)
        + "    - name: everything\n      action: allow\n      to: { cidrs: [0.0.0.0/0, \"::/0\"] }\n"
}

/// A packet-path lab with a checkpoint file of [`SIZE`] bytes being watched.
fn start(name: &str) -> Enforced {
    let mut e = Enforced::prepare(name, &[443], "");
    let ckpt = e.dir().join("ckpt");
    std::fs::create_dir_all(&ckpt).expect("checkpoint dir");
    std::fs::write(&e.policy, policy(&ckpt, "10m")).expect("policy");
    e.packet_path = true;
    let state = e.dir().join("state");
    e.agent_args.extend(["--state-dir".into(), state.into(), "--metrics-listen".into(), METRICS_ADDR.into()]);
    e.start_agent();
    let file = ckpt.join("model-00001-of-00001.safetensors");
    std::fs::File::create(&file).and_then(|f| f.set_len(SIZE)).expect("write checkpoint");
    e.agent().wait_for("checkpoint file observed", WAIT, |v| v["message"] == "checkpoint file observed");
    e
}

fn alerts(e: &Enforced) -> Vec<Value> {
    e.agent().lines().into_iter().filter(|v| v["message"] == ALERT).collect()
}

/// Waits until the detector polled `n` more times (a flow settles after 2 s of 0.5 s polls).
fn wait_polls(e: &Enforced, n: f64) {
    wait_for_increase(e.lab.node_ns(), METRICS_ADDR, "ringfence_exfil_polls_total", n, WAIT);
}

fn upload(e: &Enforced, bytes: u64) {
    e.lab
        .probe(&["tcp", ELSEWHERE, "443", "--bytes", &bytes.to_string(), "--timeout-ms", "20000"])
        .assert_ok("upload");
}

#[test]
fn a_checkpoint_sized_upload_alerts_once_across_reload_release_and_restart() {
    let mut e = start("exfil-once");
    upload(&e, SIZE);
    let alert = e.agent().wait_for_message(ALERT, WAIT);
    assert_eq!(
        (alert["kind"].as_str(), alert["action"].as_str()),
        (Some("checkpoint"), Some("block")),
        "{alert}"
    );
    assert_eq!(alert["comm"], "lab-probe", "{alert}");
    assert!(alert["country"].is_null(), "absent, not \"\": {alert}");

    // A policy reload (the rules change: their state starts over) raises nothing new.
    let ckpt = e.dir().join("ckpt");
    e.replace_policy(&policy(&ckpt, "11m"));
    wait_polls(&e, 6.0);
    assert_eq!(alerts(&e).len(), 1, "after a reload: {:?}", alerts(&e));

    // A released block stays released.
    let released = e.agent_cli(&["release", "--destination", ELSEWHERE]);
    assert!(released.status.success(), "{released:?}");
    e.agent().wait_for_message("exfiltration block released", WAIT);
    wait_polls(&e, 6.0);
    assert_eq!(alerts(&e).len(), 1, "after a release: {:?}", alerts(&e));
    let blocks = e.agent_cli(&["blocks", "--json"]);
    assert_eq!(String::from_utf8_lossy(&blocks.stdout).trim(), "[]", "released means released");

    // kill -9 and a restart: the finished flow is still in the kernel's table, yet not again.
    e.agent.as_mut().expect("agent").kill9();
    e.start_agent();
    wait_polls(&e, 6.0);
    assert!(alerts(&e).is_empty(), "after a restart: {:?}", alerts(&e));
    let blocks = e.agent_cli(&["blocks", "--json"]);
    assert_eq!(String::from_utf8_lossy(&blocks.stdout).trim(), "[]", "no block set again");

    // A new transfer of that size is a new event, and the restarted agent names its process.
    upload(&e, SIZE);
    let again = e.agent().wait_for_message(ALERT, WAIT);
    assert_eq!(again["comm"], "lab-probe", "{again}");
    assert!(again["pid"].as_u64().unwrap_or(0) > 0, "{again}");
}

#[test]
fn alerts_after_a_restart_name_the_process_that_connected_before_it() {
    let mut e = start("exfil-pid");
    // A long paced upload (connected before the restart) that sends the bulk threshold (200 MB)
    // again after the restarted agent took its baseline.
    let mut child =
        e.lab.spawn_probe(&["stream", ELSEWHERE, "443", "--bytes", "4000000000", "--rate", "40000000"]);
    let pid = child.id();
    e.agent.as_mut().expect("agent").kill9();
    e.start_agent();
    let alert = e.agent().wait_for_message(ALERT, Duration::from_secs(30));
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(alert["kind"], "bulk", "{alert}");
    assert_eq!(
        (alert["pid"].as_u64(), alert["comm"].as_str()),
        (Some(u64::from(pid)), Some("lab-probe")),
        "{alert}"
    );
}

#[test]
fn an_exact_checkpoint_size_matches_over_a_lossy_link_and_three_times_it_does_not() {
    let e = start("exfil-lossy");
    // 2% of the node's segments to port 443 are lost on the way in (nftables in the world namespace).
    for rule in [
        "add table inet lossy",
        "add chain inet lossy pre { type filter hook prerouting priority -300; }",
        "add rule inet lossy pre tcp dport 443 numgen random mod 100 < 2 drop",
    ] {
        let out = e.lab.world_ns().exec(&["nft", rule]);
        assert!(out.status.success(), "nft {rule}: {out:?}");
    }
    upload(&e, SIZE);
    let alert = e.agent().wait_for_message(ALERT, WAIT);
    assert_eq!(alert["kind"], "checkpoint", "{alert}");
    assert_eq!(alert["bytes"].as_u64(), Some(SIZE), "payload counted once: {alert}");
    let flows: Vec<Value> = serde_json::from_slice(&e.agent_cli(&["flows", "--json"]).stdout).expect("flows");
    let flow = flows
        .iter()
        .find(|f| f["remote"] == ELSEWHERE && f["remote_port"] == 443)
        .expect("the upload's flow");
    assert!(
        flow["tx_bytes"].as_u64().unwrap_or(0) > SIZE,
        "the loss caused retransmissions (counted on the wire): {flow}"
    );
    assert_eq!(
        (flow["tx_data_bytes"].as_u64(), flow["finished"].as_bool()),
        (Some(SIZE), Some(true)),
        "{flow}"
    );

    // Three times the size (to another port, a new destination total) passes through the size
    // on its way and never matches.
    let released = e.agent_cli(&["release", "--all"]);
    assert!(released.status.success());
    e.agent().wait_for_message("exfiltration block released", WAIT);
    let triple = e.lab.probe(&[
        "tcp",
        "203.0.113.5",
        "443",
        "--bytes",
        &(3 * SIZE).to_string(),
        "--timeout-ms",
        "30000",
    ]);
    triple.assert_ok("3x upload");
    wait_polls(&e, 6.0);
    assert_eq!(alerts(&e).len(), 1, "3x the checkpoint does not match: {:?}", alerts(&e));
}
