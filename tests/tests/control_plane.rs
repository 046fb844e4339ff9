//! Three nodes enrolled with a real control plane: a policy applied once is enforced on the nodes
//! its selector picks, a change propagates, and an outage changes nothing on the nodes (they keep
//! enforcing, also across an agent restart, and spool their events, delivered exactly once when
//! the control plane is back). Run as root, serially.
use std::{
    collections::HashSet,
    time::{Duration, Instant},
};

use ringfence_tests::{agent_bin, AgentProc, ControlPlane, Enforced};

const DENIED: &str = "203.0.113.5";
const STORE: &str = "198.51.100.10";
/// A port node a connects to only once, after its other denials: a new aggregation key.
const MARKER_PORT: u16 = 9;

fn allow_all() -> &'static str {
    "apiVersion: ringfence.dev/v1\nkind: EgressPolicy\nmetadata: { name: base }\nspec:\n  defaultAction: allow\n"
}

fn eu_policy(extra_deny: &str) -> String {
    format!(
        "apiVersion: ringfence.dev/v1\nkind: EgressPolicy\nmetadata: {{ name: eu }}\nspec:\n  defaultAction: allow\n  egress:\n    - {{ name: no-exfil-host, action: deny, to: {{ cidrs: [{DENIED}/32{extra_deny}] }} }}\n"
    )
}

/// One lab node with its own enrolled agent.
struct Node {
    lab: Enforced,
    id: String,
}

impl Node {
    fn enroll(cp: &ControlPlane, name: &str, region: &str) -> Node {
        let lab = Enforced::prepare(name, &[443], "");
        let id = cp.enroll(region, &lab.dir().join("state"));
        let mut node = Node { lab, id };
        node.start_agent();
        node
    }

    fn start_agent(&mut self) {
        let state = self.lab.dir().join("state");
        let args: Vec<std::ffi::OsString> = vec![
            "run".into(),
            "--control".into(),
            "--cgroup".into(),
            self.lab.lab.cgroup_path().into(),
            "--bpffs".into(),
            self.lab.bpffs().into(),
            "--state-dir".into(),
            state.into(),
            "--watch-interval".into(),
            "0.2".into(),
            // No packet path here: accept a kernel without the packet-socket guard.
            "--allow-weaker-isolation".into(),
            // The exfiltration self-test runs at start (then hourly); its result reaches the
            // control plane and the evidence pack.
            "--selftest-every".into(),
            "3600".into(),
        ];
        let agent = AgentProc::spawn_args(&agent_bin(), &args, false);
        agent.wait_for_message("enforcing", Duration::from_secs(60));
        self.lab.agent = Some(agent);
    }

    fn agent(&self) -> &AgentProc {
        self.lab.agent()
    }

    /// Whether a TCP connect from the node's cgroup to `dst` is refused.
    fn denies(&self, dst: &str) -> bool {
        self.lab.lab.tcp(dst, 443).is_eperm()
    }

    /// Waits until the node applied policy `version` (its agent logged the bundle).
    fn wait_applied(&self, bundle_at_least: usize) {
        self.agent().wait_for_count("policy applied", bundle_at_least, Duration::from_secs(10));
    }
}

/// Polls `check` every 20 ms for up to `limit`; returns how long it took.
fn time_until(limit: Duration, what: &str, check: impl Fn() -> bool) -> Duration {
    let t0 = Instant::now();
    while !check() {
        assert!(t0.elapsed() < limit, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    t0.elapsed()
}

#[test]
fn enrolled_nodes_enforce_their_selected_policy_and_survive_an_outage() {
    let mut cp = ControlPlane::start("three");
    assert_eq!(cp.apply(allow_all(), ""), 1);
    assert_eq!(cp.apply(&eu_policy(""), "region=eu"), 2);
    let a = Node::enroll(&cp, "cp-a", "eu");
    let b = Node::enroll(&cp, "cp-b", "eu");
    let mut c = Node::enroll(&cp, "cp-c", "us");

    // Applied once, enforced on the selected nodes only.
    assert!(a.denies(DENIED) && b.denies(DENIED), "eu nodes enforce the eu policy");
    assert!(!c.denies(DENIED), "the us node runs the base policy");
    assert!(!a.denies(STORE) && !c.denies(STORE));

    // A change reaches every selected node.
    let applied_before = a.agent().count("policy applied");
    let t0 = Instant::now();
    assert_eq!(cp.apply(&eu_policy(&format!(", {STORE}/32")), "region=eu"), 3);
    let spread = [&a, &b].map(|n| time_until(Duration::from_secs(10), "the change", || n.denies(STORE)));
    println!(
        "policy change in force on the eu nodes {spread:?} after `policy apply` returned (apply took {:?})",
        t0.elapsed() - spread[0] - spread[1]
    );
    assert!(spread.iter().all(|d| *d <= Duration::from_secs(2)), "{spread:?}");
    assert!(!c.denies(STORE), "the us node is not selected");
    a.wait_applied(applied_before + 1);

    // The inventory shows what each node acknowledged.
    time_until(Duration::from_secs(5), "the acks in the inventory", || {
        let list = cp.cli_json(&["nodes"]);
        let nodes = list["nodes"].as_array().cloned().unwrap_or_default();
        let applied = |id: &str| {
            nodes.iter().find(|n| n["node_id"] == id).and_then(|n| n["applied_policy_version"].as_u64())
        };
        nodes.len() == 3
            && applied(&a.id) == Some(3)
            && applied(&b.id) == Some(3)
            && applied(&c.id) == Some(1)
    });

    // Outage: the nodes keep enforcing, also after an agent restart, and spool their denials.
    cp.kill();
    for _ in 0..3 {
        assert!(a.denies(DENIED), "enforcing during the outage");
    }
    c.lab.agent.take();
    c.start_agent();
    c.agent().wait_for_message("control plane: enforcing the last good bundle", Duration::from_secs(1));
    let store_denials =
        || a.agent().events().iter().filter(|e| e["dst"] == STORE && e["verdict"] == "deny").count();
    let store_denials_before = store_denials();
    assert!(!c.denies(DENIED) && a.denies(STORE), "last good bundles in force");
    // Node a logged that denial (its count below is read from the log), and tried to deliver its
    // denials during the outage and kept them.
    time_until(Duration::from_secs(5), "node a's verdict event", || store_denials() > store_denials_before);
    a.agent().wait_for_message("event upload failed; the events stay in the spool", Duration::from_secs(20));
    cp.restart();

    // Every denial of node a reaches the control plane exactly once: aggregated per
    // (cgroup, destination, port, rule) and window, the counts add up to the denials.
    let denials = a.agent().events().iter().filter(|e| e["verdict"] == "deny").count() as u64;
    assert!(denials >= 5, "node a denied {denials} connections");
    // Node a's denial records: (id, count, port).
    let all_stored = || {
        let list = cp.cli_json(&["alerts", "--limit", "1000"]);
        list["alerts"]
            .as_array()
            .expect("alerts")
            .iter()
            .filter(|e| e["node_id"] == a.id.as_str() && e["kind"] == "deny")
            .map(|e| {
                let d = &e["details"];
                (
                    e["id"].as_str().expect("id").to_string(),
                    d["count"].as_u64().expect("count"),
                    d["port"].clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    let stored = || -> Vec<(String, u64)> {
        all_stored()
            .into_iter()
            .filter(|(_, _, port)| *port != MARKER_PORT)
            .map(|(id, n, _)| (id, n))
            .collect()
    };
    let counted = || stored().iter().map(|(_, n)| n).sum::<u64>();
    time_until(Duration::from_secs(25), "the spooled denials", || counted() >= denials);
    // Nothing more arrives: a denial of a new key is spooled at once, after everything node a
    // spooled before, and its lane is delivered in order; once it is stored, so is all that came
    // before it.
    assert!(a.lab.lab.tcp(DENIED, MARKER_PORT).is_eperm(), "the marker connect is denied");
    time_until(Duration::from_secs(25), "the marker denial", || {
        all_stored().iter().any(|(_, _, port)| *port == MARKER_PORT)
    });
    let records = stored();
    assert_eq!(counted(), denials, "each denial counted once: {records:?}");
    assert!(records.len() as u64 <= denials, "{records:?}");
    let ids: Vec<&String> = records.iter().map(|(id, _)| id).collect();
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len(), "no duplicate ids");
    let verify = cp.cli_output(&["audit", "verify"]);
    assert!(verify.status.success(), "audit chain intact: {}", String::from_utf8_lossy(&verify.stdout));
    observe_and_evidence(&cp, &a.id, denials);
}

/// The live flow view shows node a's real denials, and an evidence pack of today verifies
/// offline with its audit segment anchored.
fn observe_and_evidence(cp: &ControlPlane, node_a: &str, denials: u64) {
    let flows = cp.cli(&["observe", "-o", "json", "--node", node_a, "--verdict", "deny", "--last", "1000"]);
    let counted: u64 = flows
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a flow line"))
        .filter(|l| l["flow"]["destination"]["port"] != MARKER_PORT)
        .map(|l| {
            assert_eq!(l["flow"]["verdict"], "DROPPED", "{l}");
            assert_eq!(l["flow"]["node_id"], node_a, "{l}");
            l["flow"]["count"].as_u64().expect("count")
        })
        .sum();
    assert_eq!(counted, denials, "observe shows every denial of node a: {flows}");
    // Node a's self-test (run at its start) is stored before the pack is made.
    time_until(Duration::from_secs(60), "node a's self-test result", || {
        let list = cp.cli_json(&["alerts", "--limit", "1000"]);
        list["alerts"]
            .as_array()
            .expect("alerts")
            .iter()
            .any(|e| e["node_id"] == node_a && e["kind"] == "selftest")
    });
    let pack = cp.state.join("today.tar.zst");
    cp.cli(&[
        "evidence",
        "export",
        "--from",
        &utc_day(-86_400_000),
        "--to",
        &utc_day(86_400_000),
        "-o",
        pack.to_str().unwrap(),
    ]);
    let key = cp.state.join("evidence-signing.pub");
    let verified = cp.cli(&["evidence", "verify", pack.to_str().unwrap(), "--key", key.to_str().unwrap()]);
    assert!(
        verified.contains("evidence pack ok") && verified.contains("anchored by the checkpoint"),
        "{verified}"
    );
    assert!(verified.contains("files for"), "{verified}");
    // Each node's result carries its node's signature, checked offline against the node CA.
    assert!(
        verified.contains("self-test results:") && verified.contains("signed by their nodes"),
        "{verified}"
    );
    // The nodes' scheduled self-tests are in the pack, node a's among them, passed.
    let results = pack_file(&pack, "selftest/results.json");
    let passed = results["results"].as_array().expect("results").iter().any(|r| {
        r["node_id"] == node_a
            && r["kind"] == "selftest"
            && r["details"]["result"]["passed"] == true
            && r["details"]["signed"]["alg"] == "ecdsa-p256-sha256"
    });
    assert!(passed, "node a's passed self-test in the evidence pack: {results}");
}

/// A JSON file of an evidence pack (`.tar.zst`).
fn pack_file(pack: &std::path::Path, name: &str) -> serde_json::Value {
    let file = std::fs::File::open(pack).expect("open the pack");
    let mut archive = tar::Archive::new(zstd::Decoder::new(file).expect("zstd stream"));
    for entry in archive.entries().expect("tar entries") {
        let mut entry = entry.expect("tar entry");
        let path = entry.path().expect("entry path").to_string_lossy().into_owned();
        if path.trim_start_matches("./").ends_with(name) {
            return serde_json::from_reader(&mut entry).expect("a JSON file");
        }
    }
    panic!("{name} not in the pack")
}

/// `YYYY-MM-DD` of now + `offset_ms` (UTC).
fn utc_day(offset_ms: i64) -> String {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_millis()
            as i64;
    let days = (now + offset_ms).div_euclid(86_400_000);
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{}", days * 86_400), "+%F"])
        .output()
        .expect("date");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
