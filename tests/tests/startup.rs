//! Starting without a window: probes racing the agent's start never get a packet to a denied
//! host once the first enforcing hook (the backstop) is attached, and systemd hears READY=1 only
//! when every hook is in force. Run as root, serially.
use std::{
    os::unix::net::UnixDatagram,
    process::{Command, Stdio},
    time::Duration,
};

use ringfence_tests::{agent_bin, monotonic_ns, policy_head, probe_bin, AgentProc, Capture, Enforced};

const DENIED: &str = "203.0.113.5";
const STARTS: usize = 20;

fn policy() -> String {
    policy_head("startup", "enforce", "deny")
        + "    - name: store\n      action: allow\n      to: { cidrs: [198.51.100.0/24] }\n"
}

#[test]
fn probes_racing_twenty_starts_never_get_through_once_the_backstop_is_attached() {
    let mut e = Enforced::prepare("race", &[53, 443], &policy());
    e.lab.node_ns().sysctl("net.ipv4.tcp_fastopen", "5");
    let cap = Capture::start(&e.lab, &["rf-race-"]);
    let stop = e.dir().join("stop");
    let probe = e
        .lab
        .node_command(probe_bin())
        .args(["race", DENIED, "53", "443", "--marker", "rf-race-", "--stop-file"])
        .arg(&stop)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn the racing probes");
    // Enforcement windows: from the backstop's attach to the moment the test detaches.
    let mut windows = Vec::new();
    for start in 0..STARTS {
        let before = cap.count("rf-race-");
        // Unenforced between starts: the racing probes do reach the world (the oracle works).
        cap.wait_for("rf-race-", before + 1, Duration::from_secs(10));
        let agent = e.start_agent();
        let started = agent.wait_for_message("enforcing", Duration::from_secs(5));
        let attached = started["backstop_attached_ns"].as_u64().expect("backstop_attached_ns");
        agent.wait_for_event("a denial of the racing probes", Duration::from_secs(10), |v| {
            v["comm"] == "lab-probe" && v["verdict"] == "deny"
        });
        let until = monotonic_ns();
        e.agent.take();
        let detached = e.agent_cli(&["detach"]);
        assert!(detached.status.success(), "start {start}: detach {detached:?}");
        windows.push((attached, until));
    }
    std::fs::write(&stop, "").expect("stop file");
    let out = probe.wait_with_output().expect("racing probes");
    let sent: serde_json::Value = serde_json::from_slice(&out.stdout).expect("probe summary");
    let leaked: Vec<(char, u64)> = cap
        .payloads("rf-race-")
        .iter()
        .filter_map(|p| {
            let mut parts = p.split_whitespace();
            let kind = parts.next()?.chars().next()?;
            Some((kind, parts.next()?.parse().ok()?))
        })
        .collect();
    let inside: Vec<&(char, u64)> =
        leaked.iter().filter(|(_, ns)| windows.iter().any(|(from, to)| ns >= from && ns <= to)).collect();
    assert!(inside.is_empty(), "sent while enforced, yet arrived: {inside:?} (windows {windows:?})");
    for kind in ['u', 't'] {
        assert!(
            leaked.iter().any(|(k, _)| *k == kind),
            "the capture saw no unenforced {kind} probes: {sent}"
        );
    }
    assert!(sent["udp"].as_u64().unwrap_or(0) > 1000 && sent["tcp"].as_u64().unwrap_or(0) > 1000, "{sent}");
}

#[test]
fn systemd_hears_ready_only_when_every_hook_is_attached() {
    let e = Enforced::prepare("notify", &[], &policy());
    let socket_path = e.dir().join("notify.sock");
    let listener = UnixDatagram::bind(&socket_path).expect("bind notify socket");
    listener.set_read_timeout(Some(Duration::from_secs(60))).expect("timeout");
    let mut cmd = Command::new(agent_bin());
    cmd.env("NOTIFY_SOCKET", &socket_path);
    let mut args = e.run_args();
    args.push("--allow-weaker-isolation".into());
    let mut agent = AgentProc::spawn_command(cmd, &args, false);
    let mut buf = [0u8; 256];
    let n = listener.recv(&mut buf).expect("READY=1 from the agent");
    let message = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(message.starts_with("READY=1\n"), "{message}");
    // At that moment every hook is pinned and the agent has written that it enforces (the line
    // is written before READY=1 is sent; our reader of its stderr may see it a moment later).
    agent.wait_for_message("enforcing", Duration::from_secs(5));
    assert_eq!(agent.count("enforcing"), 1, "one start, one 'enforcing'");
    let status = e.status();
    let hooks = status["hooks"].as_array().expect("hooks").len();
    assert!(hooks >= 8, "{status}");
    let n = {
        agent.terminate();
        listener.recv(&mut buf).expect("STOPPING=1")
    };
    assert_eq!(&buf[..n], b"STOPPING=1");
}
