//! `ringfence-agent selftest exfil` on a lab node: passes while the agent enforces (detected,
//! blocked, within 256 KiB of the budget) and fails with the reason once the cgroup hooks are
//! detached. Run as root, serially.
use std::time::{Duration, Instant};

use ringfence_tests::{agent_bin, policy_head, spool::spooled, Enforced};
use serde_json::Value;

/// Runs the self-test in the lab's node namespace; returns (exit code, result).
fn selftest(e: &Enforced) -> (i32, Value) {
    let out = e
        .lab
        .node_ns()
        .command(agent_bin())
        .args(["selftest", "exfil", "--bpffs"])
        .arg(e.bpffs())
        .arg("--cgroup")
        .arg(e.lab.cgroup_path())
        .output()
        .expect("run selftest");
    let text = String::from_utf8_lossy(&out.stdout);
    let v = serde_json::from_str(text.trim()).unwrap_or_else(|_| panic!("selftest said {text:?} {out:?}"));
    eprintln!("selftest: {v}");
    (out.status.code().unwrap_or(-1), v)
}

#[test]
fn the_selftest_passes_while_enforcing_and_fails_with_the_reason_when_detached() {
    let policy = policy_head("selftest", "enforce", "allow")
        + "    - name: everything\n      action: allow\n      to: { cidrs: [0.0.0.0/0, \"::/0\"] }\n";
    let e = Enforced::start("selftest", &[443], &policy);
    let (code, r) = selftest(&e);
    assert_eq!((code, r["passed"].as_bool()), (0, Some(true)), "{r}");
    assert_eq!((r["detected"].as_bool(), r["blocked"].as_bool()), (Some(true), Some(true)), "{r}");
    assert!(r["bytes_past_budget"].as_i64().expect("bytes past") <= 256 << 10, "{r}");
    // The throwaway cgroup is gone, the lab's own traffic unaffected.
    let leftovers: Vec<_> = std::fs::read_dir(e.lab.cgroup_path())
        .expect("cgroup dir")
        .flatten()
        .filter(|d| d.file_name().to_string_lossy().starts_with("ringfence-selftest"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    e.lab.tcp("198.51.100.10", 443).assert_ok("lab traffic after the selftest");

    let detached = e.agent_cli(&["detach"]);
    assert!(detached.status.success(), "{detached:?}");
    let (code, r) = selftest(&e);
    assert_eq!((code, r["passed"].as_bool()), (1, Some(false)), "{r}");
    assert!(r["reason"].as_str().unwrap_or_default().contains("detached"), "{r}");
}

/// `run --selftest-every`: the agent runs the self-test itself (the first run at start) and its
/// result becomes a `selftest` event in the alert spool, the lane the uploader delivers to the
/// control plane first.
#[test]
fn a_scheduled_selftest_result_is_spooled_for_the_control_plane() {
    let policy = policy_head("selftest-sched", "enforce", "allow")
        + "    - name: everything\n      action: allow\n      to: { cidrs: [0.0.0.0/0, \"::/0\"] }\n";
    let mut e = Enforced::prepare("selftest-sched", &[443], &policy);
    let state = e.dir().join("state");
    e.agent_args.extend(["--state-dir".into(), state.clone().into(), "--selftest-every".into(), "60".into()]);
    e.start_agent();
    let deadline = Instant::now() + Duration::from_secs(60);
    let record = loop {
        let found = if state.join("spool").is_dir() { spooled(&state) } else { Vec::new() };
        if let Some(r) = found.into_iter().find(|r| r["kind"] == "selftest") {
            break r;
        }
        assert!(Instant::now() < deadline, "no self-test result in the spool after 60 s");
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!("spooled: {record}");
    assert_eq!(record["result"]["passed"], true, "{record}");
    assert_eq!(record["severity"], "info", "{record}");
    assert!(record["id"].as_str().unwrap_or_default().starts_with("selftest-exfil-"), "{record}");
    assert!(record["result"]["bytes_past_budget"].as_i64().is_some(), "{record}");
}
