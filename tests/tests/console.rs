//! The operator console in a real browser (Debian's chromium, playwright-core) against the real
//! control plane and a real enrolled agent in the lab: a policy applied, a denial and an
//! exfiltration alert appear in the console; a viewer cannot apply a policy (UI and API); a
//! rollback from the console reaches the node. Screenshots of every page go to
//! target/console-screenshots/lab/. Run as root, serially; skipped without chromium.
use std::time::{Duration, Instant};

use ringfence_tests::browser::{browser_missing, run_console, screenshot_dir, ConsoleRun};
use ringfence_tests::{agent_bin, policy_head_with, skip, AgentProc, ControlPlane, Enforced};
use serde_json::{json, Value};

const DENIED: &str = "203.0.113.5";
const STORE: &str = "198.51.100.10";
const EXFIL: &str = "203.0.113.6";
const WAIT: Duration = Duration::from_secs(20);

/// Allows everything but `denied`; alerts on more than 1 MB to one destination in a minute.
fn policy(denied: &[&str]) -> String {
    let exfil = "  exfiltration:\n    bulk: { bytes: 1MB, window: 1m }\n";
    let cidrs: Vec<String> = denied.iter().map(|d| format!("{d}/32")).collect();
    policy_head_with("eu", "enforce", "allow", exfil)
        + &format!("    - {{ name: no-host, action: deny, to: {{ cidrs: [{}] }} }}\n", cidrs.join(", "))
}

fn until(what: &str, check: impl Fn() -> bool) {
    let t0 = Instant::now();
    while !check() {
        assert!(t0.elapsed() < WAIT, "{what} within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn applied_version(cp: &ControlPlane, id: &str) -> Option<u64> {
    let nodes = cp.cli_json(&["nodes"]);
    nodes["nodes"].as_array()?.iter().find(|n| n["node_id"] == id)?["applied_policy_version"].as_u64()
}

fn stored_kinds(cp: &ControlPlane) -> Vec<String> {
    let alerts = cp.cli_json(&["alerts", "--limit", "1000"]);
    alerts["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["kind"].as_str().map(str::to_owned))
        .collect()
}

fn add_account(cp: &ControlPlane, name: &str, role: &str, password: &str) {
    let file = cp.state.join(format!("{name}.password"));
    std::fs::write(&file, format!("{password}\n")).expect("write password file");
    let file = file.to_str().expect("utf-8");
    cp.cli(&["accounts", "add", name, "--role", role, "--password-file", file]);
}

#[test]
fn the_console_shows_denials_and_alerts_refuses_viewers_and_rolls_back_nodes() {
    if let Some(reason) = browser_missing() {
        return skip("console", &reason);
    }
    let mut e = Enforced::prepare_with_hosts("console", &[EXFIL], &[443], "");
    // The control plane runs in the node's namespace (the agent reaches it on loopback; the
    // browser is started there too).
    let cp = ControlPlane::start_in("console", e.lab.node_ns(), "127.0.0.1:8443".parse().expect("addr"));
    add_account(&cp, "vera", "viewer", "viewer-password-1");
    add_account(&cp, "otto", "operator", "operator-password-1");
    let listed = cp.cli_json(&["accounts", "list"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "{listed}");
    assert_eq!(cp.apply(&policy(&[DENIED]), "region=eu"), 1);
    let state = e.dir().join("state");
    let id = cp.enroll("eu", &state);
    let args: Vec<std::ffi::OsString> = vec![
        "run".into(),
        "--control".into(),
        "--cgroup".into(),
        e.lab.cgroup_path().into(),
        "--bpffs".into(),
        e.bpffs().into(),
        "--state-dir".into(),
        state.into(),
        "--watch-interval".into(),
        "0.2".into(),
        "--interface".into(),
        e.lab.veth_names().0.into(),
    ];
    let agent = AgentProc::spawn_command(e.lab.node_ns().command(agent_bin()), &args, false);
    agent.wait_for_message("enforcing", Duration::from_secs(60));
    e.agent = Some(agent);
    until("the node acknowledges v1", || applied_version(&cp, &id) == Some(1));

    // A denial and an exfiltration alert (3 MB to a host that is no approved sink).
    assert!(e.lab.tcp(DENIED, 443).is_eperm(), "the policy denies {DENIED}");
    e.lab.probe(&["tcp", EXFIL, "443", "--bytes", "3000000"]).assert_ok("the bulk transfer");
    e.agent().wait_for_message("exfiltration alert", WAIT);
    until("both events stored", || {
        let kinds = stored_kinds(&cp);
        kinds.iter().any(|k| k == "deny") && kinds.iter().any(|k| k == "exfiltration")
    });

    let url = cp.url();
    let shots = screenshot_dir("lab");
    let _ = std::fs::remove_dir_all(&shots);
    let run = |command: &str, login: Value, expect: Value| -> Value {
        let run = ConsoleRun { url: &url, login, expect, shots: &shots, netns: Some(e.lab.node_ns()) };
        run_console(command, &run).unwrap_or_else(|e| panic!("{e}"))
    };
    let otto = json!({"username": "otto", "password": "operator-password-1"});
    let vera = json!({"username": "vera", "password": "viewer-password-1"});

    // Every page, as the operator: the node, its policy, both events (one acknowledged), the
    // exfiltration destination in the flow charts, the intact audit chain.
    let expect = json!({"node_id": id, "policy_version": 1, "alert_kinds": ["deny", "exfiltration"], "destination": EXFIL});
    let pages = run("pages", otto.clone(), expect);
    println!("console pages: {pages}");
    assert!(pages["chain"].as_str().is_some_and(|c| c.starts_with("intact")), "{pages}");

    // A viewer cannot apply (disabled in the UI, 403 from the API with its own CSRF token).
    let viewer = run("viewer", vera, json!({}));
    assert_eq!(viewer["apiStatus"], 403, "{viewer}");

    // A new version denies the store too; rolled back to v1 from the console, the node allows
    // it again.
    assert_eq!(cp.apply(&policy(&[DENIED, STORE]), "region=eu"), 2);
    until("v2 in force on the node", || e.lab.tcp(STORE, 443).is_eperm());
    let rollback = run("rollback", otto, json!({"version": 1}));
    assert_eq!(rollback["version"], 3, "{rollback}");
    until("the rollback in force on the node", || !e.lab.tcp(STORE, 443).is_eperm());
    until("the node acknowledges v3", || applied_version(&cp, &id) == Some(3));
    assert!(e.lab.tcp(DENIED, 443).is_eperm(), "v1 (as v3) still denies {DENIED}");
    let history = cp.cli_json(&["policy", "history"]);
    let last = history["policies"].as_array().and_then(|p| p.first()).cloned().unwrap_or_default();
    // Newest first.
    assert_eq!(
        (last["rollback_of"].as_u64(), last["author"].as_str()),
        (Some(1), Some("console:otto")),
        "{history}"
    );
    let verify = cp.cli_output(&["audit", "verify"]);
    assert!(verify.status.success(), "audit chain intact: {}", String::from_utf8_lossy(&verify.stdout));
    for page in ["fleet", "node", "policies", "alerts", "flows", "audit", "policies-viewer", "rollback-done"]
    {
        assert!(shots.join(format!("{page}.png")).is_file(), "screenshot of {page} in {}", shots.display());
    }
}
