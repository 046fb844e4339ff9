//! The control plane pushes a workload policy: an enrolled agent running with `--cgroup-root`
//! puts it on the job cgroup its selector picks (the rest of the node keeps the node default),
//! a new version replaces it, and the node's inventory on the control plane lists the job with
//! its labels and policy. Run as root, serially.
use std::time::{Duration, Instant};

use ringfence_tests::{agent_bin, workload_agent_args, AgentProc, ControlPlane, Enforced};

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
fn until(limit: Duration, what: &str, check: impl Fn() -> bool) {
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
