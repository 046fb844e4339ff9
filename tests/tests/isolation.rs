//! No way out of an enforced cgroup: every way a workload might get a packet to a denied host
//! past the connect-time hooks, tried as an attacker would (unprivileged where that is enough),
//! with and without the packet path (`--interface`). The oracle is a capture on the world side
//! of the wire (see `ringfence_tests::Capture`): nothing carrying the attempt's marker may cross,
//! while the same attempt from an unenforced sibling cgroup does. Run as root, serially.
use std::{process::Stdio, time::Duration};

use ringfence_tests::{
    agent_bin, policy_head_with, probe_bin, scenario::START_TIMEOUT, skip, AgentProc, Capture, Enforced,
    TestCgroup, NODE_V4,
};
use serde_json::Value;

const DENIED4: &str = "203.0.113.5";
const DENIED6: &str = "2001:db8:20::10";
const ALLOWED4: &str = "198.51.100.10";
const ALLOWED6: &str = "2001:db8:10::10";
/// `nobody`: the unprivileged workload user.
const NOBODY: u32 = 65534;
const SEEN: Duration = Duration::from_secs(10);

fn policy(spec: &str) -> String {
    policy_head_with("isolation", "enforce", "deny", spec)
        + "    - name: store\n      action: allow\n      to: { cidrs: [198.51.100.0/24, \"2001:db8:10::/48\"] }\n"
}

/// A lab with the agent enforcing `policy(spec)`, and an unenforced sibling cgroup for controls.
struct Rig {
    e: Enforced,
    sibling: TestCgroup,
    n: u32,
}

impl Rig {
    fn start(name: &str, packet_path: bool, spec: &str) -> Rig {
        let mut e = Enforced::prepare(name, &[53, 443], &policy(spec));
        // Unprivileged ping sockets for every group, and TCP Fast Open data without a cookie.
        e.lab.node_ns().sysctl("net.ipv4.ping_group_range", "0 2147483647");
        e.lab.node_ns().sysctl("net.ipv4.tcp_fastopen", "5");
        e.packet_path = packet_path;
        e.start_agent();
        Rig { e, sibling: TestCgroup::new(), n: 0 }
    }

    /// Runs `lab-probe args` in the node namespace, in `cgroup` (the enforced one by default),
    /// as `uid` (root by default); returns its JSON line.
    fn probe(&self, cgroup: Option<&TestCgroup>, uid: Option<u32>, args: &[String]) -> Value {
        let cg = cgroup.unwrap_or(self.e.lab.cgroup());
        let mut cmd = match uid {
            Some(uid) => self.e.lab.node_command_as(cg, uid, probe_bin()),
            None => self.e.lab.node_command_in(cg, probe_bin()),
        };
        let out = cmd.args(args).stdin(Stdio::null()).output().expect("run lab-probe");
        let text = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(text.lines().last().unwrap_or_default()).unwrap_or_else(|e| {
            panic!("lab-probe {args:?}: {e}: {text} {}", String::from_utf8_lossy(&out.stderr))
        })
    }

    /// Tries `attempt(marker)` from the enforced cgroup and proves nothing crossed: the same
    /// attempt from the sibling cgroup (control marker) is seen, the enforced one is not.
    /// Returns the enforced attempt's JSON line.
    fn assert_blocked(&mut self, uid: Option<u32>, attempt: impl Fn(&str) -> Vec<String>) -> Value {
        self.n += 1;
        let (bad, control) = (format!("rf-bad-{}-", self.n), format!("rf-ctl-{}-", self.n));
        let cap = Capture::start(&self.e.lab, &[&bad, &control]);
        let tried = self.probe(None, uid, &attempt(&bad));
        let ctl = self.probe(Some(&self.sibling), uid, &attempt(&control));
        assert!(ctl["sent"].as_u64().unwrap_or(0) > 0, "the control attempt must send: {ctl}");
        cap.wait_for(&control, 1, SEEN);
        assert_eq!(cap.count(&bad), 0, "blocked attempt crossed the wire: {tried} (control: {ctl})");
        tried
    }
}

fn args_of(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// Source routes (IPv6 segment routing header, UDP and TCP Fast Open, unprivileged; IPv4 LSRR by
/// option and by control message, as root) and ping sockets (unprivileged): the connect and
/// sendmsg hooks see an allowed address, the packet goes elsewhere.
fn ip_level_escapes(packet_path: bool) {
    let name = if packet_path { "iso-ip-pp" } else { "iso-ip" };
    let mut rig = Rig::start(name, packet_path, "");
    for kind in ["rthdr-udp", "rthdr-tfo"] {
        // The header's destination is the denied host; the route ends at the allowed one.
        let port = if kind == "rthdr-tfo" { "443" } else { "53" };
        rig.assert_blocked(Some(NOBODY), |m| {
            args_of(&["escape", kind, ALLOWED6, port, "--marker", m, "--via", DENIED6])
        });
        // First hop allowed, a denied hop in the middle: every hop is decided.
        rig.assert_blocked(Some(NOBODY), |m| {
            args_of(&[
                "escape",
                kind,
                ALLOWED6,
                port,
                "--marker",
                m,
                "--via",
                "2001:db8:10::20",
                "--via",
                DENIED6,
            ])
        });
    }
    for kind in ["srr-opt", "srr-cmsg"] {
        rig.assert_blocked(None, |m| {
            args_of(&["escape", kind, ALLOWED4, "53", "--marker", m, "--via", DENIED4])
        });
    }
    for denied in [DENIED4, DENIED6] {
        let tried =
            rig.assert_blocked(Some(NOBODY), |m| args_of(&["escape", "ping", denied, "0", "--marker", m]));
        assert_eq!(tried["socket"], "ok", "ping sockets are allowed, their packets decided: {tried}");
    }
    // An allowed destination still works for each kind (the hooks are not blunt).
    let cap = Capture::start(&rig.e.lab, &["rf-ok-"]);
    rig.probe(None, Some(NOBODY), &args_of(&["escape", "ping", ALLOWED4, "0", "--marker", "rf-ok-"]));
    rig.probe(
        None,
        Some(NOBODY),
        &args_of(&["escape", "rthdr-udp", ALLOWED6, "53", "--marker", "rf-ok-", "--via", "2001:db8:10::20"]),
    );
    cap.wait_for("rf-ok-", 2, SEEN);
    let status = rig.e.status();
    assert!(status["counters"]["backstop_dropped"].as_u64().unwrap_or(0) >= 8, "{status}");
    // Drops are events, with the process where the kernel gives it.
    let drop = rig.e.agent().wait_for_event("a backstop drop event", SEEN, |v| {
        v["hook"] == "rf_skb_egress" && v["verdict"] == "deny" && v["comm"] == "lab-probe"
    });
    assert!(drop["pid"].as_u64().unwrap_or(0) > 0, "{drop}");
}

#[test]
fn ip_level_escapes_are_blocked_without_the_packet_path() {
    ip_level_escapes(false);
}

#[test]
fn ip_level_escapes_are_blocked_with_the_packet_path() {
    ip_level_escapes(true);
}

#[test]
fn an_inbound_ping_from_a_denied_host_opens_nothing_but_its_reply() {
    let mut rig = Rig::start("iso-icmp", true, "");
    rig.e.lab.world_ns().sysctl("net.ipv4.ping_group_range", "0 2147483647");
    // The denied host pings the node first: the kernel's reply goes out (twice the marker).
    let cap = Capture::start(&rig.e.lab, &["rf-in-"]);
    let world = rig
        .e
        .lab
        .world_ns()
        .command(probe_bin())
        .args(["escape", "ping", NODE_V4, "0", "--marker", "rf-in-", "--from", DENIED4])
        .output()
        .expect("ping from the world");
    assert!(world.status.success(), "{world:?}");
    cap.wait_for("rf-in-", 2, SEEN);
    // ... which does not let the workload's own echo requests (or raw ICMP) out to that host.
    rig.assert_blocked(Some(NOBODY), |m| args_of(&["escape", "ping", DENIED4, "0", "--marker", m]));
}

impl Rig {
    /// `escape srr-accepted` in `cgroup` (the enforced one by default) on `port`, with the world
    /// connecting in until the probe took its connection; returns the probe's JSON line.
    fn accepted(&self, cgroup: Option<&TestCgroup>, port: u16, marker: &str, via: Option<&str>) -> Value {
        let cg = cgroup.unwrap_or(self.e.lab.cgroup());
        let mut args = args_of(&["escape", "srr-accepted", "0.0.0.0", &port.to_string(), "--marker", marker]);
        if let Some(hop) = via {
            args.extend(args_of(&["--via", hop]));
        }
        let mut child =
            self.e.lab.node_command_in(cg, probe_bin()).args(&args).stdout(Stdio::piped()).spawn();
        let child = child.as_mut().expect("spawn lab-probe");
        let deadline = std::time::Instant::now() + SEEN;
        while child.try_wait().expect("wait for lab-probe").is_none() {
            assert!(std::time::Instant::now() < deadline, "lab-probe took no connection on {port}");
            let _ = self.e.lab.world_probe(&["tcp", NODE_V4, &port.to_string(), "--timeout-ms", "500"]);
        }
        let mut text = String::new();
        std::io::Read::read_to_string(child.stdout.as_mut().expect("stdout"), &mut text).expect("read");
        serde_json::from_str(text.lines().last().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}: {text}"))
    }
}

/// A connection the remote side opened is a reply, which the backstop passes, unless the
/// workload gives it IP options: an accepted socket source-routed (LSRR) through a denied host
/// meets the full verdict and nothing of it leaves, while the same socket without the option
/// answers, and the same attempt from an unenforced sibling cgroup crosses the wire.
#[test]
fn an_accepted_connection_cannot_source_route_its_replies() {
    let rig = Rig::start("iso-acc", false, "");
    let cap = Capture::start(&rig.e.lab, &["rf-acc-plain-", "rf-acc-bad-", "rf-acc-ctl-"]);
    let plain = rig.accepted(None, 7101, "rf-acc-plain-", None);
    assert!(plain["sent"].as_u64().unwrap_or(0) > 0, "{plain}");
    cap.wait_for("rf-acc-plain-", 1, SEEN);
    let bad = rig.accepted(None, 7102, "rf-acc-bad-", Some(DENIED4));
    assert_eq!(bad["setup"], "ok", "the option is set (the workload is root): {bad}");
    let ctl = rig.accepted(Some(&rig.sibling), 7103, "rf-acc-ctl-", Some(DENIED4));
    assert!(ctl["sent"].as_u64().unwrap_or(0) > 0 && ctl["setup"] == "ok", "{ctl}");
    cap.wait_for("rf-acc-ctl-", 1, SEEN);
    assert_eq!(cap.count("rf-acc-bad-"), 0, "a source-routed reply crossed the wire: {bad}");
}

/// Raw IP sockets are refused by default (`rawSockets: deny`), unprivileged attempts included.
fn raw_sockets_refused(packet_path: bool) {
    let name = if packet_path { "iso-raw-pp" } else { "iso-raw" };
    let mut rig = Rig::start(name, packet_path, "");
    for (kind, dst) in [
        ("raw-udp", DENIED4),
        ("raw-icmp", DENIED4),
        ("raw-hdrincl", DENIED4),
        ("raw-udp", DENIED6),
        ("raw-icmp", DENIED6),
    ] {
        let tried = rig.assert_blocked(None, |m| args_of(&["escape", kind, dst, "53", "--marker", m]));
        assert_eq!(tried["socket"], "EPERM", "{kind} to {dst}: {tried}");
    }
    let refusal = rig.e.agent().wait_for_event("a raw-socket refusal event", SEEN, |v| {
        v["hook"] == "rf_sock_create" && v["rule"] == "rawSockets"
    });
    assert_eq!(
        (refusal["comm"].as_str(), refusal["socket"].as_str()),
        (Some("lab-probe"), Some("inet/raw")),
        "{refusal}"
    );
    let status = rig.e.status();
    assert!(status["counters"]["sockets_refused"].as_u64().unwrap_or(0) >= 5, "{status}");
    assert_eq!(status["raw_sockets"], "deny", "{status}");
}

#[test]
fn raw_sockets_are_refused_without_the_packet_path() {
    raw_sockets_refused(false);
}

#[test]
fn raw_sockets_are_refused_with_the_packet_path() {
    raw_sockets_refused(true);
}

/// Under `rawSockets: policy` raw sockets may be created and every packet is decided, link-local
/// and broadcast destinations included (the policy exempts neither).
fn raw_sockets_decided(packet_path: bool) {
    let name = if packet_path { "iso-rawp-pp" } else { "iso-rawp" };
    let mut rig = Rig::start(name, packet_path, "  rawSockets: policy\n");
    let uplink = rig.e.lab.veth_names().0.to_string();
    for (kind, dst) in [
        ("raw-udp", DENIED4),
        ("raw-icmp", DENIED4),
        ("raw-hdrincl", DENIED4),
        ("raw-udp", DENIED6),
        ("raw-udp", "169.254.1.1"),
    ] {
        let tried = rig.assert_blocked(None, |m| args_of(&["escape", kind, dst, "53", "--marker", m]));
        assert_eq!(tried["socket"], "ok", "{tried}");
    }
    rig.assert_blocked(None, |m| {
        args_of(&["escape", "raw-udp", "255.255.255.255", "53", "--marker", m, "--iface", &uplink])
    });
    let cap = Capture::start(&rig.e.lab, &["rf-ok-"]);
    rig.probe(None, None, &args_of(&["escape", "raw-udp", ALLOWED4, "53", "--marker", "rf-ok-"]));
    cap.wait_for("rf-ok-", 1, SEEN);
}

#[test]
fn raw_sockets_under_policy_are_decided_without_the_packet_path() {
    raw_sockets_decided(false);
}

#[test]
fn raw_sockets_under_policy_are_decided_with_the_packet_path() {
    raw_sockets_decided(true);
}

/// Packet sockets on a kernel without BPF LSM: frames of every kind from the enforced cgroup
/// are decided (IP, behind a VLAN tag) or dropped (non-IP) on the packet path, and the qdisc
/// bypass is refused. Where BPF LSM runs, the socket is refused outright.
#[test]
fn packet_sockets_cannot_get_frames_past_the_packet_path() {
    let mut rig = Rig::start("iso-pkt", true, "");
    let uplink = rig.e.lab.veth_names().0.to_string();
    let guard = rig.e.status()["packet_sockets"].clone();
    for kind in ["ip", "vlan", "nonip"] {
        for bypass in [false, true] {
            let tried = rig.assert_blocked(None, |m| {
                let mut a = args_of(&["frames", kind, &uplink, DENIED4, "53", "--marker", m]);
                if bypass {
                    a.push("--bypass".into());
                }
                a
            });
            if guard == "refused" {
                assert_eq!(tried["socket"], "EPERM", "{tried}");
            } else if bypass {
                assert_eq!(tried["setup"], "EPERM", "PACKET_QDISC_BYPASS refused: {tried}");
            }
        }
    }
    let status = rig.e.status();
    if guard != "refused" {
        assert!(status["counters"]["nonip_dropped"].as_u64().unwrap_or(0) >= 2, "{status}");
    }
    // IP frames to an allowed host still go out (decided, not blanket-dropped).
    let cap = Capture::start(&rig.e.lab, &["rf-ok-"]);
    let ok =
        rig.probe(None, None, &args_of(&["frames", "ip", &uplink, ALLOWED4, "53", "--marker", "rf-ok-"]));
    if guard != "refused" {
        assert_eq!(ok["sent"], 1, "{ok}");
        cap.wait_for("rf-ok-", 1, SEEN);
    }
}

/// A packet socket the workload opened before the agent started is still policed: its frames
/// go through the packet path and it cannot switch on the qdisc bypass.
#[test]
fn a_packet_socket_opened_before_the_agent_started_is_policed() {
    let mut e = Enforced::prepare("iso-pkt-pre", &[53], &policy(""));
    let uplink = e.lab.veth_names().0.to_string();
    let cap = Capture::start(&e.lab, &["rf-pre-", "rf-ctl-"]);
    let mut early = e
        .lab
        .node_command(probe_bin())
        .args([
            "frames",
            "nonip",
            &uplink,
            DENIED4,
            "53",
            "--marker",
            "rf-pre-",
            "--bypass",
            "--count",
            "3",
            "--wait-stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the early packet socket");
    let mut stdout = std::io::BufReader::new(early.stdout.take().expect("stdout"));
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).expect("ready line");
    assert_eq!(line.trim(), "ready", "the socket exists before the agent");
    e.packet_path = true;
    e.start_agent();
    std::io::Write::write_all(&mut early.stdin.take().expect("stdin"), b"go\n").expect("signal");
    let out = early.wait_with_output().expect("early probe");
    line.clear();
    std::io::Read::read_to_string(&mut stdout, &mut line).expect("result");
    let tried: Value = serde_json::from_str(line.trim()).unwrap_or_else(|_| panic!("{line} {out:?}"));
    assert_eq!(tried["setup"], "EPERM", "the bypass is refused for an existing socket too: {tried}");
    let sibling = TestCgroup::new();
    let ctl = e
        .lab
        .node_command_in(&sibling, probe_bin())
        .args(["frames", "nonip", &uplink, DENIED4, "53", "--marker", "rf-ctl-"])
        .output()
        .expect("control");
    assert!(ctl.status.success());
    cap.wait_for("rf-ctl-", 1, SEEN);
    assert_eq!(cap.count("rf-pre-"), 0, "{tried}");
}

/// Without the packet path, a kernel that cannot refuse packet sockets makes the agent refuse
/// to start (never silently weaker) and leave nothing attached; `--allow-weaker-isolation` starts
/// it and says what is not covered. Where the kernel runs BPF LSM, packet sockets are refused.
#[test]
fn without_the_packet_path_packet_sockets_need_bpf_lsm_or_an_explicit_opt_out() {
    let mut e = Enforced::prepare("iso-weak", &[53], &policy(""));
    let mut args = e.run_args();
    args.extend(["--state-dir".into(), e.dir().join("state").into()]);
    let mut agent = AgentProc::spawn_args(&agent_bin(), &args, false);
    match agent.wait_for_message_or_exit("enforcing", START_TIMEOUT) {
        Some(started) => {
            // This kernel runs BPF LSM: packet sockets are refused at creation.
            assert_eq!(started["packet_sockets"], "refused", "{started}");
            e.agent = Some(agent);
            let sibling = TestCgroup::new();
            let mut rig = Rig { e, sibling, n: 0 };
            let uplink = rig.e.lab.veth_names().0.to_string();
            let tried = rig.assert_blocked(None, |m| {
                args_of(&["frames", "nonip", &uplink, DENIED4, "53", "--marker", m])
            });
            assert_eq!(tried["socket"], "EPERM", "{tried}");
        }
        None => {
            let status = agent.wait_exit(START_TIMEOUT);
            let log = serde_json::to_string(&agent.lines()).expect("json");
            assert_eq!(status.code(), Some(69), "{log}");
            for needle in ["packet sockets", "--interface", "--allow-weaker-isolation"] {
                assert!(log.contains(needle), "missing {needle:?}: {log}");
            }
            let links = std::fs::read_dir(e.bpffs().join("links")).map(|d| d.count()).unwrap_or(0);
            assert_eq!(links, 0, "a refused start attaches nothing");
            // The explicit opt-out starts, and says what it does not cover.
            e.start_agent();
            assert_eq!(e.status()["packet_sockets"], "NOT policed");
            skip(
                "without_the_packet_path_packet_sockets_need_bpf_lsm_or_an_explicit_opt_out: BPF LSM branch",
                "this kernel does not load BPF LSM programs, so refusing packet sockets at creation cannot be shown here",
            );
        }
    }
}

/// `protocol: icmp` rules cover pings; port entries never do (an echo identifier is no port).
#[test]
fn icmp_rules_cover_pings_and_port_rules_never_do() {
    let policy = policy_head_with("icmp-rules", "enforce", "deny", "")
        + "    - { name: any-port, action: allow, to: { cidrs: [203.0.113.0/24] }, ports: [ { range: 1-65535 } ] }\n"
        + "    - { name: ping-only, action: allow, to: { cidrs: [198.51.100.0/24] }, ports: [ { protocol: icmp } ] }\n";
    let mut e = Enforced::prepare("iso-icmp-rules", &[443], &policy);
    e.lab.node_ns().sysctl("net.ipv4.ping_group_range", "0 2147483647");
    e.start_agent();
    let mut rig = Rig { e, sibling: TestCgroup::new(), n: 0 };
    rig.assert_blocked(Some(NOBODY), |m| args_of(&["escape", "ping", DENIED4, "0", "--marker", m]));
    let cap = Capture::start(&rig.e.lab, &["rf-ping-"]);
    rig.probe(None, Some(NOBODY), &args_of(&["escape", "ping", ALLOWED4, "0", "--marker", "rf-ping-"]));
    cap.wait_for("rf-ping-", 1, SEEN);
    rig.e.lab.tcp(ALLOWED4, 443).assert_eperm("an icmp rule allows no TCP");
    rig.e.lab.tcp(DENIED4, 443).assert_ok("the port rule allows TCP");
}
