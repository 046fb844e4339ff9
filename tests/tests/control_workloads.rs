//! The control plane pushes a workload policy: an enrolled agent running with `--cgroup-root`
//! puts it on the job cgroup its selector picks (the rest of the node keeps the node default),
//! a new version replaces it, and the node's inventory on the control plane lists the job with
//! its labels and policy. Run as root, serially.
use std::time::{Duration, Instant};

use ringfence_tests::{agent_bin, workload_agent_args, AgentProc, ControlPlane, Enforced, TestCgroup};

const DENIED: &str = "203.0.113.5";
const STORE: &str = "198.51.100.10";
const WAIT: Duration = Duration::from_secs(10);

const NODE_DEFAULT: &str =
    "apiVersion: ringfence.dev/v1\nkind: EgressPolicy\nmetadata: { name: base }\nspec:\n  defaultAction: allow\n";

/// The training job's policy: everything but `denied`.
fn job_policy(denied: &str) -> String {
    format!(
        "apiVersion: ringfence.dev/v1\nkind: EgressPolicy\nmetadata: {{ name: train }}\nspec:\n  workloadSelector: {{ matchLabels: {{ job: train }} }}\n  defaultAction: allow\n  egress:\n    - {{ name: no-host, action: deny, to: {{ cidrs: [{denied}/32] }} }}\n"
    )
}

/// Polls `check` every 20 ms until it holds, for up to `limit`.
fn until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !check() {
        assert!(t0.elapsed() < limit, "{what} within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_workload_policy_from_the_control_plane_governs_the_job_it_selects() {
    let cp = ControlPlane::start("cpwl");
    let mut e = Enforced::prepare("cpwl-a", &[443], "");
    let dir = e.dir().to_path_buf();
    let labels = dir.join("labels.yaml");
    std::fs::write(&labels, "- pattern: \"job-train*\"\n  labels: { job: train, team: vision }\n").unwrap();
    let identity = dir.join("identity.yaml");
    std::fs::write(
        &identity,
        format!(
            "apiVersion: ringfence.dev/v1\nkind: IdentitySources\nsources:\n  static:\n    file: {}\n",
            labels.display()
        ),
    )
    .unwrap();
    let state = dir.join("state");
    let id = cp.enroll("eu", &state);
    cp.apply(NODE_DEFAULT, "region=eu");
    let v1 = cp.apply(&job_policy(DENIED), "region=eu");
    let job = e.lab.cgroup().child("job-train-7");
    let mut args = workload_agent_args(e.lab.cgroup_path(), &identity, &e.bpffs(), &state);
    args.push("--control".into());
    let agent = AgentProc::spawn_args(&agent_bin(), &args, false);
    agent.wait_for_message("enforcing", Duration::from_secs(60));
    e.agent = Some(agent);
    let lab = &e.lab;

    // The job gets the workload policy from the bundle, the rest of the node the default.
    lab.probe_in(&job, &["tcp", DENIED, "443"]).assert_eperm("the job -> its denied host");
    lab.probe_in(&job, &["tcp", STORE, "443"]).assert_ok("the job -> elsewhere");
    lab.tcp(DENIED, 443).assert_ok("the node default governs the rest");
    let ev = e.agent().wait_for_event("the job's denial", WAIT, |v| v["dst"] == DENIED);
    assert_eq!(
        (ev["workload"].as_str(), ev["policy"].as_str()),
        (Some("job-train-7"), Some("train")),
        "{ev}"
    );

    // The control plane's inventory lists the job with its labels and governing policy.
    until(WAIT, "the job in the node's inventory", || {
        let node = cp.cli_json(&["nodes", "show", &id]);
        node["workloads"].as_array().is_some_and(|w| {
            w.iter().any(|w| {
                w["path"] == "job-train-7" && w["policy"] == "train" && w["labels"]["team"] == "vision"
            })
        })
    });

    allowed_connection_in_the_live_view(&cp, &id, &e, &job);

    // A new version of the workload policy replaces it on the job.
    let v2 = cp.apply(&job_policy(STORE), "region=eu");
    assert!(v2 > v1);
    until(WAIT, "the new version on the job", || lab.probe_in(&job, &["tcp", STORE, "443"]).is_eperm());
    lab.probe_in(&job, &["tcp", DENIED, "443"]).assert_ok("the old version's denial is gone");
    lab.tcp(STORE, 443).assert_ok("still the default outside the job");

    // An overlapping workload policy is refused by the control plane; nothing changes here.
    let other = dir.join("other.yaml");
    std::fs::write(
        &other,
        "apiVersion: ringfence.dev/v1\nkind: EgressPolicy\nmetadata: { name: vision }\nspec:\n  workloadSelector: { matchLabels: { team: vision } }\n  defaultAction: deny\n",
    )
    .unwrap();
    let out = cp.cli_output(&["policy", "apply", other.to_str().unwrap(), "--selector", "region=eu"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("\"vision\"") && stderr.contains("\"train\""), "{stderr}");
    lab.probe_in(&job, &["tcp", DENIED, "443"]).assert_ok("still the train policy");
}

/// (audit records, stored events) on the control plane now.
fn stored_counts(cp: &ControlPlane) -> (usize, usize) {
    let audit = cp.cli(&["audit", "export"]).lines().filter(|l| !l.trim().is_empty()).count();
    let alerts = cp.cli_json(&["alerts", "--limit", "10000"])["alerts"].as_array().expect("alerts").len();
    (audit, alerts)
}

/// The flow lines of `observe -o json` output.
fn flows(lines: &[String]) -> Vec<serde_json::Value> {
    lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("a JSON line"))
        .filter_map(|l| l.get("flow").cloned())
        .collect()
}

/// An allowed connection from the job reaches a following `ringfence observe` as an allow
/// verdict with the job's labels, its destination, policy and rule; one made earlier is still
/// shown to a stream that starts later (kept in memory); neither is stored or audited.
fn allowed_connection_in_the_live_view(cp: &ControlPlane, node: &str, e: &Enforced, job: &TestCgroup) {
    // The job's denial is stored first: nothing else is on its way while the counts are taken.
    until(WAIT, "the job's denial stored", || {
        cp.cli_json(&["alerts"])["alerts"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["kind"] == "deny" && x["details"]["dst"] == DENIED))
    });
    let before = stored_counts(cp);
    let filter = ["observe", "-o", "json", "--node", node, "--verdict", "allow", "--workload", "job=train"];
    let store_net = format!("{STORE}/32");
    let to_store = [&filter[..], &["--to", &store_net, "--last", "100"]].concat();
    // The job's earlier allowed connection to the store, from a stream started afterwards.
    let mut earlier = Vec::new();
    until(WAIT, "the earlier allow verdict in observe", || {
        let out: Vec<String> = cp.cli(&to_store).lines().map(str::to_owned).collect();
        earlier = flows(&out);
        !earlier.is_empty()
    });
    // A following stream: open once it printed the newest stored or kept flow.
    let follow = cp.cli_stream(&[&filter[..], &["-f", "--last", "1"]].concat());
    until(WAIT, "the following stream open", || !flows(&follow.lines()).is_empty());
    let known: Vec<serde_json::Value> =
        flows(&follow.lines()).iter().map(|f| f["event_id"].clone()).collect();
    e.lab.probe_in(job, &["tcp", STORE, "443"]).assert_ok("the job -> the store");
    let fresh = || flows(&follow.lines()).into_iter().find(|f| !known.contains(&f["event_id"]));
    until(WAIT, "the new allow verdict in the following stream", || fresh().is_some());
    let f = fresh().expect("a new flow");
    drop(follow);
    for f in [&f, &earlier[0]] {
        assert_eq!(
            (f["verdict"].as_str(), f["event_type"].as_str()),
            (Some("FORWARDED"), Some("allow")),
            "{f}"
        );
        assert_eq!(f["source"]["workload"], "job-train-7", "{f}");
        let labels = &f["source"]["labels"];
        assert_eq!((labels["job"].as_str(), labels["team"].as_str()), (Some("train"), Some("vision")), "{f}");
        let dst = &f["destination"];
        assert_eq!((dst["ip"].as_str(), dst["port"].as_u64()), (Some(STORE), Some(443)), "{f}");
        assert_eq!((f["policy"].as_str(), f["rule"].as_str()), (Some("train"), Some("default")), "{f}");
    }
    // Neither stored nor audited.
    assert_eq!(stored_counts(cp), before, "allow verdicts do not enter the events table or the audit chain");
    let audit = cp.cli(&["audit", "export"]);
    for f in [&f, &earlier[0]] {
        assert!(!audit.contains(f["event_id"].as_str().expect("an id")), "no audit record names an allow");
    }
}
