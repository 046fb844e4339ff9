//! Per-workload policies (`run --cgroup-root`): jobs on one node, each enforced by the policy its
//! labels select, in both directions, from the moment its cgroup exists. The lab's cgroup is the
//! root; the jobs are child cgroups labelled by the static identity source; the world namespace
//! plays the internet, a peer node (198.51.100.20) and the corporate network (203.0.113.5).
//! Run as root, serially (`cargo xtask test`).
use std::{
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use ipnet::IpNet;
use ringfence_policy::geo::fixture::{write_mmdb, Layout};
use ringfence_tests::probe::{probe_bin, ProbeResult};
use ringfence_tests::{agent_bin, workload_agent_args, AgentProc, Capture, Enforced, LoopReport, TestCgroup};

const WAIT: Duration = Duration::from_secs(10);
const START: Duration = Duration::from_secs(60);
/// The eu job's rendezvous port.
const RENDEZVOUS: u16 = 29500;
/// A world host inside the EU (DE) and one inside the US.
const EU_HOST: &str = "198.51.100.10";
const US_HOST: &str = "203.0.113.5";
/// The eu job's peer on another node (allowed in) and the corporate network (not).
const PEER_NODE: &str = "198.51.100.20";
const CORPORATE: &str = US_HOST;
const PEER_NODE_V6: &str = "2001:db8:10::10";
const CORPORATE_V6: &str = "2001:db8:20::10";
/// The node's own IPv6 address.
const NODE_V6: &str = "2001:db8:1::1";
/// The node's own address (the lab's veth).
const NODE: &str = "192.0.2.1";

const NODE_DEFAULT: &str = "apiVersion: ringfence.dev/v1
kind: EgressPolicy
metadata: { name: node-default }
spec:
  defaultAction: deny
  egress: []
";

fn job_policy(name: &str, profile: &str, egress: &str, ingress: &str) -> String {
    format!(
        "apiVersion: ringfence.dev/v1
kind: EgressPolicy
metadata: {{ name: {name} }}
spec:
  workloadSelector:
    matchLabels: {{ ringfence.dev/profile: {profile} }}
  defaultAction: deny
  egress:
{egress}{ingress}"
    )
}

/// EU destinations (DE, FR) on 443/tcp and 53; ingress: the rendezvous port from the peer node.
fn eu_policy() -> String {
    job_policy(
        "eu",
        "eu-resident",
        "    - name: eu\n      action: allow\n      to: { countries: [DE, FR] }\n      ports: [{ port: 443, protocol: tcp }, { port: 53 }]\n",
        &format!(
            "  defaultIngress: deny\n  ingress:\n    - name: rendezvous-from-peer\n      action: allow\n      from: {{ cidrs: [{PEER_NODE}/32, \"{PEER_NODE_V6}/128\"] }}\n      ports: [{{ port: {RENDEZVOUS} }}]\n"
        ),
    )
}

/// US destinations only; nothing may connect in (`defaultIngress: deny`, no ingress rules).
fn us_policy() -> String {
    job_policy(
        "us",
        "us-resident",
        "    - name: us\n      action: allow\n      to: { countries: [US] }\n      ports: [{ port: 443, protocol: tcp }, { port: 53 }]\n",
        "  defaultIngress: deny\n",
    )
}

/// A tools job that may connect anywhere (so only the eu job's ingress rules can stop it).
fn tools_policy() -> String {
    job_policy(
        "tools",
        "tools",
        "    - name: anything\n      action: allow\n      to: { cidrs: [0.0.0.0/0, \"::/0\"] }\n",
        "",
    )
}

const STATIC_LABELS: &str = r#"- pattern: "job-eu*"
  labels: { ringfence.dev/profile: eu-resident, team: vision }
- pattern: "job-us"
  labels: { ringfence.dev/profile: us-resident }
- pattern: "job-tools"
  labels: { ringfence.dev/profile: tools }
"#;

/// 198.51.100.0/25 is DE, 2001:db8:10::/48 FR, 203.0.113.0/24 and 2001:db8:20::/48 US.
fn write_db(path: &Path) {
    let nets: Vec<(IpNet, &str)> = [
        ("198.51.100.0/25", "DE"),
        ("2001:db8:10::/48", "FR"),
        ("203.0.113.0/24", "US"),
        ("2001:db8:20::/48", "US"),
    ]
    .iter()
    .map(|(n, c)| (n.parse().expect("network"), *c))
    .collect();
    write_mmdb(path, &nets, Layout::GeoIp2Country, 6).expect("write test database");
}

/// A lab whose cgroup is the root of the jobs, the files the agent needs, and the run arguments.
struct Node {
    e: Enforced,
    state: PathBuf,
    args: Vec<OsString>,
}

impl Node {
    fn new(name: &str) -> Node {
        let e = Enforced::prepare_with_hosts(name, &[], &[443, 53], NODE_DEFAULT);
        let dir = e.dir().to_path_buf();
        let write = |file: &str, text: &str| {
            let p = dir.join(file);
            std::fs::write(&p, text).expect("write test file");
            p
        };
        let db = dir.join("country.mmdb");
        write_db(&db);
        let labels = write("labels.yaml", STATIC_LABELS);
        let jobs = dir.join("slurm-jobs");
        std::fs::create_dir_all(&jobs).expect("job info dir");
        let identity = write(
            "identity.yaml",
            &format!(
                "apiVersion: ringfence.dev/v1\nkind: IdentitySources\nsources:\n  static:\n    file: {}\n  slurm:\n    jobInfoDir: {}\n",
                labels.display(),
                jobs.display()
            ),
        );
        let state = dir.join("state");
        std::fs::create_dir_all(&state).expect("state dir");
        let mut args = workload_agent_args(e.lab.cgroup_path(), &identity, &e.bpffs(), &state);
        args.extend(["--policy".into(), e.policy.clone().into(), "--geoip-db".into(), db.into()]);
        for (file, text) in
            [("eu.yaml", eu_policy()), ("us.yaml", us_policy()), ("tools.yaml", tools_policy())]
        {
            args.extend(["--workload-policy".into(), write(file, &text).into()]);
        }
        Node { e, state, args }
    }

    fn start(&mut self) {
        self.e.agent = Some(spawn_agent(&self.args));
    }

    fn agent(&self) -> &AgentProc {
        self.e.agent()
    }

    /// `ringfence-agent workloads --json`.
    fn workloads(&self) -> Vec<serde_json::Value> {
        let out = Command::new(agent_bin())
            .args(["workloads", "--json", "--state-dir"])
            .arg(&self.state)
            .output()
            .expect("run ringfence-agent workloads");
        assert!(out.status.success(), "workloads: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).expect("workloads JSON")
    }

    fn policy_of(&self, path: &str) -> Option<String> {
        self.workloads()
            .iter()
            .find(|w| w["path"] == path)
            .and_then(|w| w["policy"].as_str().map(String::from))
    }
}

/// An unprivileged user (as in the isolation tests).
const NOBODY: u32 = 65534;

/// Runs `lab-probe args` in `cgroup` of the node, as `uid` (root when `None`).
fn run_as(node: &Node, cgroup: &TestCgroup, uid: Option<u32>, args: &[&str]) -> std::process::Output {
    let lab = &node.e.lab;
    let mut cmd = match uid {
        Some(uid) => lab.node_command_as(cgroup, uid, probe_bin()),
        None => lab.node_command_in(cgroup, probe_bin()),
    };
    cmd.args(args).stdin(std::process::Stdio::null()).output().expect("run lab-probe")
}

/// A `tcp`/`udp` probe as `uid` (root when `None`).
fn probe_as(node: &Node, cgroup: &TestCgroup, uid: Option<u32>, args: &[&str]) -> ProbeResult {
    match uid {
        Some(uid) => node.e.lab.probe_in_as(cgroup, uid, args),
        None => node.e.lab.probe_in(cgroup, args),
    }
}

/// An `escape` attempt as `uid`: its JSON line (socket, setup, sent, failed).
fn escape_as(node: &Node, cgroup: &TestCgroup, uid: Option<u32>, args: &[&str]) -> serde_json::Value {
    let out = run_as(node, cgroup, uid, &[&["escape"], args].concat());
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("lab-probe escape {args:?}: {e}: {text}"))
}

/// Starts `lab-probe loop` in `cgroup` against a destination the eu policy denies and one it
/// allows; `until` says when it stops (`--stop-file F` or `--duration-ms D`).
fn spawn_loop(node: &Node, cgroup: &ringfence_tests::TestCgroup, until: &[&str]) -> std::process::Child {
    let (deny, allow) = (format!("tcp:{US_HOST}:443:deny"), format!("tcp:{EU_HOST}:443:allow"));
    let mut args = vec!["loop", "--interval-ms", "2", "--timeout-ms", "500"];
    args.extend_from_slice(until);
    args.extend(["--target", deny.as_str(), "--target", allow.as_str()]);
    node.e.lab.spawn_probe_in(cgroup, &args)
}

/// Starts the agent with `args` and waits until it enforces.
fn spawn_agent(args: &[OsString]) -> AgentProc {
    let agent = AgentProc::spawn_args(&agent_bin(), args, false);
    agent.wait_for_message("enforcing", START);
    agent
}

/// A TCP exchange from the world, from source address `from`, with a short timeout.
fn tcp_from_world(node: &Node, from: &str, port: u16) -> bool {
    let to = if from.contains(':') { NODE_V6 } else { NODE };
    node.e.lab.world_probe(&["tcp", to, &port.to_string(), "--bind", from, "--timeout-ms", "1000"]).ok
}

#[test]
fn jobs_on_one_node_get_their_own_policies_in_both_directions() {
    let mut node = Node::new("wljobs");
    let root = node.e.lab.cgroup();
    let (eu, us, tools) = (root.child("job-eu"), root.child("job-us"), root.child("job-tools"));
    node.e.lab.start_node_servers_in(&eu, &[RENDEZVOUS]);
    node.e.lab.start_node_servers_in(&us, &[RENDEZVOUS + 1]);
    node.start();
    for (path, policy) in [("job-eu", "eu"), ("job-us", "us"), ("job-tools", "tools")] {
        assert_eq!(node.policy_of(path).as_deref(), Some(policy), "{path}: {:?}", node.workloads());
    }
    let lab = &node.e.lab;
    // Egress, at the same time on one node: each job only where its residency allows.
    lab.probe_in(&eu, &["tcp", EU_HOST, "443"]).assert_ok("eu job -> DE");
    lab.probe_in(&eu, &["udp", "2001:db8:10::10", "53"]).assert_ok("eu job -> FR (udp, the reply passes)");
    lab.probe_in(&eu, &["tcp", US_HOST, "443"]).assert_eperm("eu job -> US");
    lab.probe_in(&eu, &["tcp", "2001:db8:20::10", "443"]).assert_eperm("eu job -> US (v6)");
    lab.probe_in(&us, &["tcp", US_HOST, "443"]).assert_ok("us job -> US");
    lab.probe_in(&us, &["udp", "2001:db8:20::10", "53", "--connect"]).assert_ok("us job -> US (udp6)");
    lab.probe_in(&us, &["tcp", EU_HOST, "443"]).assert_eperm("us job -> DE");
    // A cgroup under the root that is no workload: the node default (deny everything).
    lab.tcp(EU_HOST, 443).assert_eperm("unlabelled cgroup under the root");

    // Ingress: the eu job's rendezvous port takes its peer on another node, nobody else.
    assert!(tcp_from_world(&node, PEER_NODE, RENDEZVOUS), "the eu job's peer node must get in");
    assert!(!tcp_from_world(&node, CORPORATE, RENDEZVOUS), "the corporate network must not get in");
    assert!(tcp_from_world(&node, PEER_NODE_V6, RENDEZVOUS), "the peer node must get in over IPv6");
    assert!(
        !tcp_from_world(&node, CORPORATE_V6, RENDEZVOUS),
        "the corporate network must not get in over IPv6"
    );
    let udp6 = lab.world_probe(&[
        "udp",
        NODE_V6,
        &RENDEZVOUS.to_string(),
        "--bind",
        CORPORATE_V6,
        "--timeout-ms",
        "500",
    ]);
    assert!(!udp6.ok, "an IPv6 datagram from the corporate network must not reach the eu job: {udp6:?}");
    let udp =
        lab.world_probe(&["udp", NODE, &RENDEZVOUS.to_string(), "--bind", CORPORATE, "--timeout-ms", "500"]);
    assert!(!udp.ok, "a datagram from the corporate network must not reach the eu job: {udp:?}");
    let tools_in = lab.probe_in(&tools, &["tcp", NODE, &RENDEZVOUS.to_string(), "--timeout-ms", "1000"]);
    assert!(!tools_in.ok, "another job on the node must not reach the eu job's port: {tools_in:?}");
    // The us job opens no port: neither the corporate network nor the peer node gets in.
    assert!(!tcp_from_world(&node, CORPORATE, RENDEZVOUS + 1), "corporate network into the us job");
    assert!(!tcp_from_world(&node, PEER_NODE, RENDEZVOUS + 1), "the eu peer into the us job");

    // Events say which workload, which policy and which direction.
    let ev = node.agent().wait_for_event("ingress denial", WAIT, |v| {
        v["hook"] == "rf_skb_ingress" && v["dst"] == CORPORATE && v["port"] == RENDEZVOUS
    });
    assert_eq!((ev["workload"].as_str(), ev["policy"].as_str()), (Some("job-eu"), Some("eu")), "{ev}");
    assert!(ev["labels"].as_str().unwrap_or("").contains("team=vision"), "{ev}");
    let ev = node
        .agent()
        .wait_for_event("us job denial", WAIT, |v| v["dst"] == EU_HOST && v["workload"] == "job-us");
    assert_eq!((ev["verdict"].as_str(), ev["policy"].as_str()), (Some("deny"), Some("us")), "{ev}");
    let status = node.e.status();
    assert!(status["counters"]["ingress_dropped"].as_u64().unwrap_or(0) >= 2, "{status}");
}

#[test]
fn a_job_is_governed_from_its_first_instruction_and_its_state_goes_with_it() {
    let mut node = Node::new("wlrace");
    node.start();
    let root = node.e.lab.cgroup();
    // The job's cgroup appears and a process starts in it at once, looping on a destination its
    // policy denies and one it allows: the denied one must never get through, not even before
    // the agent has seen the cgroup (the node default governs it until then).
    let made = Instant::now();
    let job = root.child("job-eu-42");
    let stop = node.e.dir().join("stop-loop");
    let probe = spawn_loop(&node, &job, &["--stop-file", stop.to_str().expect("utf-8 path")]);
    let seen = node
        .agent()
        .wait_for("the new job", WAIT, |v| v["message"] == "workload found" && v["workload"] == "job-eu-42");
    let in_force = made.elapsed();
    assert_eq!(seen["policy"], "eu", "{seen}");
    // Stop the loop once it has been refused under the job's own policy (its denials are
    // events with its pid) and has made enough attempts to mean something (the node counts
    // every denial; events are rate limited).
    let pid = probe.id();
    node.agent()
        .wait_for_event("the loop under the eu policy", WAIT, |v| v["pid"] == pid && v["policy"] == "eu");
    let denials = || node.e.status()["counters"]["denied"].as_u64().unwrap_or(0);
    let (floor, deadline) = (denials() + 20, Instant::now() + WAIT);
    while denials() < floor {
        assert!(Instant::now() < deadline, "the loop made too few attempts: {}", node.e.status());
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::write(&stop, "").expect("stop the loop");
    let report = LoopReport::from_output(&probe.wait_with_output().expect("loop output"));
    let denied = report.target(&format!("tcp:{US_HOST}:443:deny"));
    let allowed = report.target(&format!("tcp:{EU_HOST}:443:allow"));
    eprintln!(
        "cgroup made -> own policy seen by the test: {} ms; denied target: {} attempts, {} through; allowed target: {} attempts, {} through",
        in_force.as_millis(),
        denied.attempts,
        denied.ok,
        allowed.attempts,
        allowed.ok
    );
    assert!(denied.attempts > 10 && denied.ok == 0, "a denied destination got through: {denied:?}");
    assert!(allowed.ok > 0, "the job's own policy never came into force: {allowed:?}");
    assert!(in_force < Duration::from_secs(2), "own policy after {in_force:?}");
    assert_eq!(node.policy_of("job-eu-42").as_deref(), Some("eu"));

    // The job ends: its cgroup goes, and with it the agent's record of it.
    drop(job);
    node.agent().wait_for_message("workload ended", WAIT);
    // The state file follows the kernel entries (written right after the log line).
    let deadline = Instant::now() + WAIT;
    while node.policy_of("job-eu-42").is_some() {
        assert!(Instant::now() < deadline, "job still listed: {:?}", node.workloads());
        std::thread::yield_now();
    }
}

#[test]
fn bad_workload_configuration_exits_64_with_every_error() {
    let node = Node::new("wlbad");
    let dir = node.e.dir();
    let bad_identity = dir.join("bad-identity.yaml");
    std::fs::write(
        &bad_identity,
        "apiVersion: ringfence.dev/v1\nkind: IdentitySources\nsources:\n  ldap: {}\n",
    )
    .expect("write");
    let twin = dir.join("eu-twin.yaml");
    std::fs::write(&twin, eu_policy().replace("name: eu }", "name: eu-twin }")).expect("write");
    let missing_root = dir.join("no-such-cgroup-root");
    let mut args = node.args.clone();
    let swap = |args: &mut Vec<OsString>, flag: &str, value: &Path| {
        let i = args.iter().position(|a| a == flag).expect("flag present") + 1;
        args[i] = value.into();
    };
    swap(&mut args, "--cgroup-root", &missing_root);
    swap(&mut args, "--identity", &bad_identity);
    args.extend(["--workload-policy".into(), twin.into()]);
    let out = Command::new(agent_bin()).args(&args).output().expect("run the agent");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "exit code; stderr: {stderr}");
    for needle in ["no-such-cgroup-root", "ldap", "\"eu\"", "\"eu-twin\""] {
        assert!(stderr.contains(needle), "the error report must mention {needle}: {stderr}");
    }
    // Nothing was attached.
    assert!(!node.e.bpffs().join("links").exists(), "no program may be attached on bad configuration");
}

#[test]
fn a_job_whose_profile_arrives_later_is_held_by_the_node_default_until_then() {
    let mut node = Node::new("wllate");
    node.start();
    let root = node.e.lab.cgroup();
    // A Slurm job cgroup whose prolog has not written the job file yet: it is a workload
    // (slurm.job=77) that no policy selects, so the node default (deny everything) governs it.
    let job = root.child("job_77");
    node.agent().wait_for("job 77 found", WAIT, |v| {
        v["message"] == "workload found" && v["workload"] == "job_77" && v["policy"] == "node default"
    });
    let before = spawn_loop(&node, &job, &["--duration-ms", "300"]);
    let before = LoopReport::from_output(&before.wait_with_output().expect("loop output"));
    let (denied, allowed) = (
        before.target(&format!("tcp:{US_HOST}:443:deny")),
        before.target(&format!("tcp:{EU_HOST}:443:allow")),
    );
    assert!(denied.attempts > 5 && denied.ok == 0, "denied got through under the node default: {denied:?}");
    assert!(
        allowed.attempts > 5 && allowed.ok == 0 && allowed.eperm == allowed.attempts,
        "before its profile is known the job has only the node default: {allowed:?}"
    );

    // The prolog writes the job file while the job keeps probing: the switch to the job's own
    // policy never lets the denied destination through.
    let stop = node.e.dir().join("stop-late");
    let during = spawn_loop(&node, &job, &["--stop-file", stop.to_str().expect("utf-8 path")]);
    let pid = during.id();
    // The loop is running under the node default (its denials are events with its pid)...
    node.agent().wait_for_event("the loop under the node default", WAIT, |v| {
        v["pid"] == pid && v["policy"] == "node-default"
    });
    let jobs = node.e.dir().join("slurm-jobs");
    std::fs::write(jobs.join("77.tmp"), "user=alice\naccount=vision\npartition=gpu\nprofile=eu-resident\n")
        .expect("write job file");
    std::fs::rename(jobs.join("77.tmp"), jobs.join("77")).expect("job file into place");
    let changed = node.agent().wait_for("job 77 relabelled", WAIT, |v| {
        v["message"] == "workload changed" && v["workload"] == "job_77"
    });
    assert_eq!(changed["policy"], "eu", "{changed}");
    let deadline = Instant::now() + WAIT;
    while !node.e.lab.probe_in(&job, &["tcp", EU_HOST, "443"]).ok {
        assert!(Instant::now() < deadline, "the job's own policy did not come into force");
    }
    // ...and then under the job's own policy.
    node.agent()
        .wait_for_event("the loop under the eu policy", WAIT, |v| v["pid"] == pid && v["policy"] == "eu");
    std::fs::write(&stop, "").expect("stop the loop");
    let during = LoopReport::from_output(&during.wait_with_output().expect("loop output"));
    let denied = during.target(&format!("tcp:{US_HOST}:443:deny"));
    assert!(denied.attempts > 1 && denied.ok == 0, "denied got through during the switch: {denied:?}");
    let w = node.workloads().into_iter().find(|w| w["path"] == "job_77").expect("job 77 listed");
    assert_eq!(
        (w["labels"]["slurm.job"].as_str(), w["labels"]["slurm.account"].as_str()),
        (Some("77"), Some("vision")),
        "{w}"
    );
}

#[test]
fn workloads_stay_enforced_while_the_agent_is_dead_and_after_it_restarts() {
    let mut node = Node::new("wlrestart");
    node.start();
    let root = node.e.lab.cgroup();
    let eu = root.child("job-eu");
    node.agent().wait_for("job-eu", WAIT, |v| v["message"] == "workload found" && v["workload"] == "job-eu");
    node.e.lab.probe_in(&eu, &["tcp", EU_HOST, "443"]).assert_ok("eu job -> DE");
    // A loop in the eu job runs through the agent's death and restart.
    let stop = node.e.dir().join("stop-restart");
    let probing = spawn_loop(&node, &eu, &["--stop-file", stop.to_str().expect("utf-8 path")]);
    node.e.agent.as_mut().expect("agent").kill9();
    // No agent: the pinned programs and maps keep every workload on its policy...
    node.e.lab.probe_in(&eu, &["tcp", EU_HOST, "443"]).assert_ok("eu job -> DE, agent dead");
    node.e.lab.probe_in(&eu, &["tcp", US_HOST, "443"]).assert_eperm("eu job -> US, agent dead");
    // ...and a job that starts meanwhile is held by the node default until an agent sees it.
    let us = root.child("job-us");
    node.e.lab.probe_in(&us, &["tcp", US_HOST, "443"]).assert_eperm("new job, agent dead: node default");
    node.e.agent = Some(spawn_agent(&node.args));
    let seen = node.agent().wait_for("job-us after the restart", WAIT, |v| {
        v["message"] == "workload found" && v["workload"] == "job-us"
    });
    assert_eq!(seen["policy"], "us", "{seen}");
    node.e.lab.probe_in(&us, &["tcp", US_HOST, "443"]).assert_ok("us job -> US after the restart");
    node.e.lab.probe_in(&eu, &["tcp", US_HOST, "443"]).assert_eperm("eu job -> US after the restart");
    std::fs::write(&stop, "").expect("stop the loop");
    let report = LoopReport::from_output(&probing.wait_with_output().expect("loop output"));
    let (denied, allowed) = (
        report.target(&format!("tcp:{US_HOST}:443:deny")),
        report.target(&format!("tcp:{EU_HOST}:443:allow")),
    );
    assert!(denied.attempts > 1 && denied.ok == 0, "denied got through around the restart: {denied:?}");
    assert_eq!(allowed.ok, allowed.attempts, "the eu job lost its policy around the restart: {allowed:?}");
}

/// What a process inside a job might try to leave its policy: every socket kind, as root and as
/// an unprivileged user, from the job's cgroup and from a cgroup it makes under its own. The us
/// job may reach US hosts only; the EU host stays out of reach whatever it tries.
#[test]
fn a_job_cannot_leave_its_policy_by_socket_kind_user_or_nested_cgroup() {
    let mut node = Node::new("wlattack");
    node.e.lab.node_ns().sysctl("net.ipv4.ping_group_range", "0 2147483647");
    node.start();
    let job = node.e.lab.cgroup().child("job-us");
    let tools = node.e.lab.cgroup().child("job-tools");
    node.agent()
        .wait_for("the us job", WAIT, |v| v["message"] == "workload found" && v["workload"] == "job-us");
    let nested = job.child("step-0");
    let eu_v6 = "2001:db8:10::10";
    let mapped = format!("::ffff:{EU_HOST}");
    for (cg, place) in [(&job, "job"), (&nested, "nested cgroup")] {
        for uid in [None, Some(NOBODY)] {
            let what = |how: &str| format!("{how} from the {place} as {uid:?}");
            probe_as(&node, cg, uid, &["tcp", EU_HOST, "443"]).assert_eperm(&what("TCP connect"));
            probe_as(&node, cg, uid, &["udp", EU_HOST, "53"]).assert_eperm(&what("UDP sendto"));
            probe_as(&node, cg, uid, &["udp", EU_HOST, "53", "--connect"]).assert_eperm(&what("UDP connect"));
            probe_as(&node, cg, uid, &["tcp", eu_v6, "443"]).assert_eperm(&what("TCP over IPv6"));
            probe_as(&node, cg, uid, &["tcp", &mapped, "443"]).assert_eperm(&what("IPv4-mapped IPv6"));
            probe_as(&node, cg, uid, &["tcp", US_HOST, "443"]).assert_ok(&what("the job's own destination"));
        }
    }
    // Raw IP sockets are refused to root in the job (an unprivileged user has none anyway).
    let raw = escape_as(&node, &nested, None, &["raw-udp", EU_HOST, "53", "--marker", "rf-wl-raw-"]);
    assert_eq!(raw["socket"], "EPERM", "a raw socket in the job must be refused: {raw}");
    // Ping sockets open, but their echo requests to the EU host never cross the wire: the tools
    // job's ping, sent after them on the same path, is the control that must be seen.
    let cap = Capture::start(&node.e.lab, &["rf-wl-bad-", "rf-wl-ctl-"]);
    for (cg, uid) in [(&job, Some(NOBODY)), (&nested, Some(NOBODY)), (&nested, None)] {
        let tried = escape_as(&node, cg, uid, &["ping", EU_HOST, "0", "--marker", "rf-wl-bad-"]);
        assert_eq!(tried["socket"], "ok", "ping sockets open, their packets are decided: {tried}");
    }
    let ctl = escape_as(&node, &tools, Some(NOBODY), &["ping", EU_HOST, "0", "--marker", "rf-wl-ctl-"]);
    assert!(ctl["sent"].as_u64().unwrap_or(0) > 0, "the control ping from the tools job: {ctl}");
    cap.wait_for("rf-wl-ctl-", 1, WAIT);
    assert_eq!(cap.count("rf-wl-bad-"), 0, "an echo request left the us job");
    assert_eq!(node.policy_of("job-us").as_deref(), Some("us"));
}

/// The static identity file is followed: relabelling a service moves it to the policy its new
/// labels select, with no restart; a file that no longer parses keeps the labels in force.
#[test]
fn an_edited_static_identity_file_relabels_running_workloads() {
    let mut node = Node::new("wlrelabel");
    node.start();
    let tools = node.e.lab.cgroup().child("job-tools");
    node.agent().wait_for("the tools job", WAIT, |v| {
        v["message"] == "workload found" && v["workload"] == "job-tools"
    });
    node.e.lab.probe_in(&tools, &["tcp", EU_HOST, "443"]).assert_ok("tools may go anywhere");
    let labels = node.e.dir().join("labels.yaml");
    let relabelled = STATIC_LABELS.replace(
        "- pattern: \"job-tools\"\n  labels: { ringfence.dev/profile: tools }",
        "- pattern: \"job-tools\"\n  labels: { ringfence.dev/profile: us-resident }",
    );
    assert_ne!(relabelled, STATIC_LABELS, "the test's edit applies");
    std::fs::write(&labels, &relabelled).expect("rewrite the static identity file");
    let changed = node.agent().wait_for("the relabelled job", WAIT, |v| {
        v["message"] == "workload changed" && v["workload"] == "job-tools"
    });
    assert_eq!(changed["policy"], "us", "{changed}");
    node.e.lab.probe_in(&tools, &["tcp", EU_HOST, "443"]).assert_eperm("now under the us policy");
    node.e.lab.probe_in(&tools, &["tcp", US_HOST, "443"]).assert_ok("the us policy's own destination");
    // A broken edit is refused and changes nothing.
    std::fs::write(&labels, "- pattern: [broken\n").expect("break the file");
    node.agent().wait_for_message("static identity file refused; the mapping in force stays", WAIT);
    node.e.lab.probe_in(&tools, &["tcp", US_HOST, "443"]).assert_ok("labels in force kept");
    assert_eq!(node.policy_of("job-tools").as_deref(), Some("us"));
}
