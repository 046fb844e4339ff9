//! WireGuard mesh: two node namespaces joined by a veth underlay, each running the agent with a
//! userspace WireGuard (boringtun-cli). Run as root, serially.
//!
//! ```text
//!  node A netns                        node B netns
//!  underlay 192.0.2.1/24     <veth>    underlay 192.0.2.2/24
//!  rfwga… 198.51.100.1/32   (UDP)      rfwgb… 198.51.100.2/32
//! ```
use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use ringfence_tests::{
    agent_bin, cleanup_stale, policy_head, probe_bin, AgentProc, Bpffs, NetNs, ProbeResult, TestCgroup,
};

const TUNNEL_A: &str = "198.51.100.1";
const TUNNEL_B: &str = "198.51.100.2";
const UNDERLAY_A: &str = "192.0.2.1";
const UNDERLAY_B: &str = "192.0.2.2";
const PORT: u16 = 51820;
const SERVICE_PORT: &str = "8443";
const SOCKET_DIR: &str = "/var/run/wireguard";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// boringtun-cli from PATH or ~/.cargo/bin (installed by `cargo xtask setup`).
fn boringtun() -> PathBuf {
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".cargo/bin"));
    }
    dirs.into_iter()
        .map(|d| d.join("boringtun-cli"))
        .find(|p| p.is_file())
        .expect("boringtun-cli not found: run `cargo xtask setup` (cargo install boringtun-cli --version 0.7.1 --locked)")
}

/// Pids of boringtun serving `iface` (it daemonizes, so it is not our child).
fn boringtun_pids(iface: &str) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmd.split(|&b| b == 0).collect();
            args.first().is_some_and(|a| a.ends_with(b"boringtun-cli")) && args.contains(&iface.as_bytes())
        })
        .collect()
}

/// One node: namespace, cgroup, bpffs, state directory, peers file, agent, WireGuard interface.
/// Drop stops the agent and boringtun and removes the socket and the state directory; the
/// fields then remove the cgroup, the bpffs and the namespace (with the tun device).
struct Node {
    iface: String,
    dir: PathBuf,
    agent: Option<AgentProc>,
    cgroup: TestCgroup,
    bpffs: Bpffs,
    ns: NetNs,
}

impl Node {
    fn new(tag: &str, ns: NetNs) -> Node {
        let id = format!("{:x}{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let iface = format!("rfwg{tag}{id}");
        assert!(iface.len() <= 15, "{iface} too long");
        let dir = std::env::temp_dir().join(format!("ringfence-wg-{iface}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("state dir");
        let policy = policy_head(&format!("wg-{tag}"), "enforce", "allow")
            + "    - name: mesh\n      action: allow\n      to: { cidrs: [198.51.100.0/24] }\n";
        std::fs::write(dir.join("policy.yaml"), policy).expect("policy");
        Node { iface, dir, agent: None, cgroup: TestCgroup::new(), bpffs: Bpffs::new(), ns }
    }

    fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    fn peers_file(&self) -> PathBuf {
        self.dir.join("peers.json")
    }

    /// `ringfence-agent wg pubkey` (generates the key on first use).
    fn pubkey(&self) -> String {
        let out = Command::new(agent_bin())
            .args(["wg", "pubkey", "--state-dir"])
            .arg(self.state_dir())
            .output()
            .expect("run wg pubkey");
        assert!(out.status.success(), "wg pubkey: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("utf8").trim().to_string()
    }

    /// Writes the peers file atomically (rename), so the agent never reads half a file.
    fn write_peers(&self, peers: &[(&str, &str, &str)]) {
        let list: Vec<_> = peers
            .iter()
            .map(|(key, endpoint, allowed)| {
                serde_json::json!({"publicKey": key, "endpoint": endpoint, "allowedIps": [allowed], "region": "test"})
            })
            .collect();
        let tmp = self.dir.join("peers.json.tmp");
        std::fs::write(&tmp, serde_json::json!({ "peers": list }).to_string()).expect("write peers");
        std::fs::rename(&tmp, self.peers_file()).expect("rename peers");
    }

    fn start_agent(&mut self, address: &str) {
        self.start_agent_with(address, &[]);
    }

    /// Like `start_agent`, with extra `run` arguments.
    fn start_agent_with(&mut self, address: &str, extra: &[String]) {
        let mut args: Vec<String> = vec![
            "run".into(),
            "--policy".into(),
            self.dir.join("policy.yaml").display().to_string(),
            "--cgroup".into(),
            self.cgroup.path().display().to_string(),
            "--bpffs".into(),
            self.bpffs.path().display().to_string(),
            "--watch-interval".into(),
            "0.2".into(),
            "--wg-interface".into(),
            self.iface.clone(),
            "--wg-address".into(),
            format!("{address}/32"),
            "--wg-listen-port".into(),
            PORT.to_string(),
            "--wg-peers".into(),
            self.peers_file().display().to_string(),
            "--wg-backend".into(),
            "userspace".into(),
            "--wg-userspace-impl".into(),
            boringtun().display().to_string(),
            "--state-dir".into(),
            self.state_dir().display().to_string(),
        ];
        args.extend(extra.iter().cloned());
        let agent = AgentProc::spawn_command(self.ns.command(agent_bin()), &args, false);
        agent.wait_for_message("wireguard peers reconciled", Duration::from_secs(20));
        self.agent = Some(agent);
    }

    fn agent(&self) -> &AgentProc {
        self.agent.as_ref().expect("agent started")
    }

    fn ifindex(&self) -> u64 {
        let out = self.ns.ip(&["-j", "link", "show", "dev", &self.iface]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j link");
        v[0]["ifindex"].as_u64().expect("ifindex")
    }

    fn wg_show(&self, what: &str) -> String {
        let out = self.ns.exec(&["wg", "show", &self.iface, what]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Total bytes the device sent and received over all peers (`wg show IFACE transfer`).
    fn wg_transfer(&self) -> u64 {
        self.wg_show("transfer")
            .lines()
            .flat_map(|l| l.split_whitespace().skip(1).map(|n| n.parse::<u64>().expect("bytes")))
            .sum()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut agent) = self.agent.take() {
            agent.kill9();
        }
        for pid in boringtun_pids(&self.iface) {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while !boringtun_pids(&self.iface).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_file(Path::new(SOCKET_DIR).join(format!("{}.sock", self.iface)));
        let _ = std::fs::remove_file(Path::new(SOCKET_DIR).join(format!("{}.name", self.iface)));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Kills the server on drop.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Two nodes with the underlay between them; agents not started.
fn mesh() -> (Node, Node) {
    cleanup_stale();
    let (na, nb) = (NetNs::new("wga"), NetNs::new("wgb"));
    let id = format!("{:x}{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    let (va, vb) = (format!("rfua{id}"), format!("rfub{id}"));
    na.ip(&["link", "add", &va, "type", "veth", "peer", "name", &vb, "netns", nb.name()]);
    na.ip(&["addr", "add", &format!("{UNDERLAY_A}/24"), "dev", &va]);
    nb.ip(&["addr", "add", &format!("{UNDERLAY_B}/24"), "dev", &vb]);
    na.ip(&["link", "set", &va, "up"]);
    nb.ip(&["link", "set", &vb, "up"]);
    (Node::new("a", na), Node::new("b", nb))
}

fn serve(ns: &NetNs) -> Server {
    use std::io::BufRead;
    let mut child = ns
        .command(probe_bin())
        .args(["serve", "--tcp", SERVICE_PORT, "--udp", SERVICE_PORT])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn lab-probe serve");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("ready line");
    assert_eq!(line.trim(), "ready", "lab-probe serve");
    Server(child)
}

fn tcp(ns: &NetNs, addr: &str) -> ProbeResult {
    let out = ns
        .command(probe_bin())
        .args(["tcp", addr, SERVICE_PORT, "--timeout-ms", "3000"])
        .stdin(Stdio::null())
        .output()
        .expect("run lab-probe tcp");
    ProbeResult::from_output("lab-probe tcp", &out)
}

/// Retries a TCP probe for a while (the first packets wait for the handshake).
fn tcp_eventually(ns: &NetNs, addr: &str) -> ProbeResult {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = tcp(ns, addr);
        if r.ok || Instant::now() >= deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// (packets sent on `dev`, UDP datagrams sent, TCP segments sent) in the namespace.
fn counters(ns: &NetNs, dev: &str) -> (u64, u64, u64) {
    let out = ns.ip(&["-s", "-j", "link", "show", "dev", dev]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -s -j link");
    let tx = v[0]["stats64"]["tx"]["packets"].as_u64().expect("tx packets");
    let text = String::from_utf8_lossy(&ns.exec(&["cat", "/proc/net/snmp"]).stdout).into_owned();
    let get = |table: &str, column: &str| -> u64 {
        let mut rows = text.lines().filter(|l| l.starts_with(table));
        let (names, values) = (rows.next().expect("header"), rows.next().expect("values"));
        let col = names.split_whitespace().position(|n| n == column).expect("column");
        values.split_whitespace().nth(col).expect("value").parse().expect("number")
    };
    (tx, get("Udp:", "OutDatagrams"), get("Tcp:", "OutSegs"))
}

fn underlay(node: &Node) -> String {
    let out = node.ns.ip(&["-j", "addr", "show"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j addr");
    v.as_array()
        .expect("links")
        .iter()
        .find(|l| l["ifname"].as_str().is_some_and(|n| n.starts_with("rfu")))
        .and_then(|l| l["ifname"].as_str())
        .expect("underlay veth")
        .to_string()
}

#[test]
fn mesh_tunnel_keys_and_peer_reconciliation() {
    let (mut a, mut b) = mesh();
    // (3) keys: generated by `wg pubkey` before the agents run, exchanged through peers files.
    let (key_a, key_b) = (a.pubkey(), b.pubkey());
    assert_ne!(key_a, key_b);
    for n in [&a, &b] {
        let mode =
            std::fs::metadata(n.state_dir().join("wireguard.key")).expect("key file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "key file mode");
    }
    let peer_b = (key_b.as_str(), "192.0.2.2:51820", "198.51.100.2/32");
    let peer_a = (key_a.as_str(), "192.0.2.1:51820", "198.51.100.1/32");
    a.write_peers(&[peer_b]);
    b.write_peers(&[peer_a]);
    a.start_agent(TUNNEL_A);
    b.start_agent(TUNNEL_B);
    for (n, key) in [(&a, &key_a), (&b, &key_b)] {
        let up = n.agent().wait_for_message("wireguard up", Duration::from_secs(1));
        assert_eq!(up["public_key"].as_str(), Some(key.as_str()), "agent used another key: {up}");
        // boringtun does not report its private key over the UAPI, so `wg show public-key` says
        // "(none)"; the working tunnel below proves each side uses the key the other configured.
        assert_eq!(n.wg_show("listen-port"), PORT.to_string());
        assert_eq!(n.pubkey(), *key, "wg pubkey after start");
        let link = n.ns.ip(&["-j", "addr", "show", "dev", &n.iface]);
        let v: serde_json::Value = serde_json::from_slice(&link.stdout).expect("ip -j addr");
        assert_eq!(v[0]["mtu"].as_u64(), Some(1420), "{v}");
        assert!(v[0]["flags"].as_array().expect("flags").iter().any(|f| f == "UP"), "{v}");
    }
    assert!(a.ns.ip(&["route", "show", "198.51.100.2/32"]).stdout.starts_with(b"198.51.100.2 dev rfwga"));
    let _server = serve(&b.ns);

    // (1) + (2): TCP to B's tunnel address works, and the underlay carries only UDP for it.
    let ua = underlay(&a);
    tcp_eventually(&a.ns, TUNNEL_B).assert_ok("tcp through the tunnel (handshake)");
    std::thread::sleep(Duration::from_millis(300));
    let (tx0, udp0, tcp0) = counters(&a.ns, &ua);
    let wg0 = a.wg_transfer();
    for _ in 0..5 {
        tcp(&a.ns, TUNNEL_B).assert_ok("tcp through the tunnel");
    }
    let (tx1, udp1, tcp1) = counters(&a.ns, &ua);
    let (tx, udp, tcp_segs) = (tx1 - tx0, udp1 - udp0, tcp1 - tcp0);
    assert!(tcp_segs >= 15, "5 connections sent {tcp_segs} TCP segments");
    assert!(udp >= tcp_segs, "each tunnelled segment is one UDP datagram: {udp} UDP for {tcp_segs} TCP");
    // What left through the underlay is WireGuard's UDP (give or take a neighbour probe or a
    // counter read racing a datagram): had any TCP segment bypassed the tunnel, `tx` would be
    // about `udp + tcp_segs`.
    assert!(
        tx.abs_diff(udp) <= 3,
        "underlay sent {tx} packets for {udp} UDP datagrams ({tcp_segs} TCP segments)"
    );
    assert!(a.wg_transfer() > wg0, "wg transfer counters did not move");
    let endpoints = a.wg_show("endpoints");
    assert!(endpoints.contains(&format!("{UNDERLAY_B}:{PORT}")), "{endpoints}");

    // (4) reconciliation: remove B, connectivity stops; add it back, it returns; same interface.
    let index = a.ifindex();
    let reconciled = a.agent().count("wireguard peers reconciled");
    a.write_peers(&[]);
    a.agent().wait_for_count("wireguard peers reconciled", reconciled + 1, Duration::from_secs(10));
    let line = a.agent().wait_for("removal", Duration::from_secs(1), |v| {
        v["message"] == "wireguard peers reconciled"
            && v["removed"].as_str().is_some_and(|r| r.contains(&key_b))
    });
    assert!(line["routes_removed"].as_str().is_some_and(|r| r.contains("198.51.100.2/32")), "{line}");
    assert_eq!(a.wg_show("peers"), "", "peer B still on the device");
    assert!(a.ns.ip(&["route", "show", "198.51.100.2/32"]).stdout.is_empty(), "route to B stayed");
    let r = tcp(&a.ns, TUNNEL_B);
    assert!(!r.ok, "tcp to B without the peer: {r:?}");

    a.write_peers(&[peer_b]);
    a.agent().wait_for_count("wireguard peers reconciled", reconciled + 2, Duration::from_secs(10));
    assert_eq!(a.wg_show("peers"), key_b);
    tcp_eventually(&a.ns, TUNNEL_B).assert_ok("tcp through the tunnel after re-adding B");
    assert_eq!(a.ifindex(), index, "interface was recreated");

    // A changed peer (more allowed IPs) is updated in place; a bad file is rejected.
    let reconciled = a.agent().count("wireguard peers reconciled");
    std::fs::write(a.peers_file(), "{\"peers\":[{\"publicKey\":\"nope\",\"endpont\":1}]}")
        .expect("bad peers");
    a.agent().wait_for_message("peers file rejected; the peers in force stay", Duration::from_secs(10));
    assert_eq!(a.wg_show("peers"), key_b);
    let mut wide = peer_b;
    wide.2 = "198.51.100.0/30";
    a.write_peers(&[wide]);
    a.agent().wait_for_count("wireguard peers reconciled", reconciled + 1, Duration::from_secs(10));
    let allowed = a.wg_show("allowed-ips");
    assert!(
        allowed.contains("198.51.100.0/30"),
        "wg show allowed-ips: {allowed}\n{:#?}",
        a.agent().lines().last()
    );
    assert!(!a.ns.ip(&["route", "show", "198.51.100.0/30"]).stdout.is_empty());
    assert!(a.ns.ip(&["route", "show", "198.51.100.2/32"]).stdout.is_empty());
    tcp_eventually(&a.ns, TUNNEL_B).assert_ok("tcp after widening allowed IPs");
    assert_eq!(a.ifindex(), index);

    // A restarted agent adopts the running device: nothing recreated, nothing changed.
    a.agent.as_mut().expect("agent").kill9();
    a.start_agent(TUNNEL_A);
    let up = a.agent().wait_for_message("wireguard up", Duration::from_secs(1));
    assert_eq!(up["created"], false, "{up}");
    let line = a.agent().wait_for_message("wireguard peers reconciled", Duration::from_secs(1));
    for field in ["added", "updated", "removed", "routes_added", "routes_removed"] {
        assert_eq!(line[field], "[]", "restart changed {field}: {line}");
    }
    assert_eq!(a.ifindex(), index);
    tcp(&a.ns, TUNNEL_B).assert_ok("tcp after an agent restart");

    // SIGTERM leaves the interface up; `wg down` removes it and stops boringtun.
    let st = a.agent.as_mut().expect("agent").terminate();
    assert!(st.success(), "agent exit {st:?}");
    assert_eq!(a.ifindex(), index, "interface gone after SIGTERM");
    assert!(!boringtun_pids(&a.iface).is_empty());
    let out =
        a.ns.command(agent_bin()).args(["wg", "down", "--wg-interface", &a.iface]).output().expect("wg down");
    assert!(out.status.success(), "wg down: {}", String::from_utf8_lossy(&out.stderr));
    assert!(boringtun_pids(&a.iface).is_empty(), "boringtun still runs");
    assert!(!Path::new(SOCKET_DIR).join(format!("{}.sock", a.iface)).exists());
    let gone = a.ns.command("ip").args(["link", "show", "dev", &a.iface]).output().expect("ip link");
    assert!(!gone.status.success(), "interface still there after wg down");
}

#[test]
fn bad_wireguard_flags_are_all_reported_before_anything_is_touched() {
    cleanup_stale();
    let ns = NetNs::new("wgbad");
    let node = Node::new("x", ns);
    std::fs::write(
        node.peers_file(),
        "{\"peers\":[{\"publicKey\":\"short\",\"allowedIps\":[\"198.51.100.1/24\"]}]}",
    )
    .expect("peers");
    let args = [
        "run",
        "--policy",
        &node.dir.join("policy.yaml").display().to_string(),
        "--cgroup",
        &node.cgroup.path().display().to_string(),
        "--bpffs",
        &node.dir.join("not-bpffs").display().to_string(),
        "--wg-interface",
        &node.iface,
        "--wg-address",
        "not-an-address",
        "--wg-peers",
        &node.peers_file().display().to_string(),
        "--wg-backend",
        "userspace",
        "--wg-userspace-impl",
        "/nonexistent/boringtun",
        "--state-dir",
        &node.state_dir().display().to_string(),
    ];
    let out = node.ns.command(agent_bin()).args(args).output().expect("run agent");
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "not on a bpf filesystem",
        "--wg-address \"not-an-address\"",
        "/nonexistent/boringtun",
        "publicKey \"short\"",
        "did you mean 198.51.100.0/24",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in {err}");
    }
    assert!(!node.state_dir().exists(), "state dir created although the configuration was rejected");
    assert!(boringtun_pids(&node.iface).is_empty());
}

/// Non-ICMP IPv4 packets the namespace received (ICMP left out: it has its own schedule).
fn ipv4_received(ns: &NetNs) -> u64 {
    let text = String::from_utf8_lossy(&ns.exec(&["cat", "/proc/net/snmp"]).stdout).into_owned();
    let get = |table: &str, column: &str| -> u64 {
        let mut rows = text.lines().filter(|l| l.starts_with(table));
        let (names, values) = (rows.next().expect("header"), rows.next().expect("values"));
        let col = names.split_whitespace().position(|n| n == column).expect("column");
        values.split_whitespace().nth(col).expect("value").parse().expect("number")
    };
    get("Ip:", "InReceives") - get("Icmp:", "InMsgs")
}

#[test]
fn traffic_between_nodes_only_leaves_inside_wireguard() {
    let (mut a, mut b) = mesh();
    let (key_a, key_b) = (a.pubkey(), b.pubkey());
    a.write_peers(&[(key_b.as_str(), "192.0.2.2:51820", "198.51.100.2/32")]);
    b.write_peers(&[(key_a.as_str(), "192.0.2.1:51820", "198.51.100.1/32")]);
    // Node A: its peer's tunnel address must be encrypted; the packet path watches the underlay.
    let policy = policy_head("wg-a", "enforce", "allow")
        .replace("  egress:\n", "  peers: { cidrs: [198.51.100.2/32] }\n  egress:\n")
        + "    - name: mesh\n      action: allow\n      to: { cidrs: [198.51.100.0/24] }\n";
    std::fs::write(a.dir.join("policy.yaml"), policy).expect("policy");
    let underlay_a = underlay(&a);
    a.start_agent_with(TUNNEL_A, &["--interface".into(), underlay_a.clone()]);
    b.start_agent(TUNNEL_B);
    let _server = serve(&b.ns);

    // Through the tunnel: allowed, and the underlay carries it as WireGuard UDP to the endpoint.
    tcp_eventually(&a.ns, TUNNEL_B).assert_ok("A to B through the tunnel");
    a.agent().wait_for_message("packet path: wireguard peer endpoints updated", Duration::from_secs(1));
    // A plaintext path to B exists as soon as the tunnel is gone.
    a.ns.ip(&["route", "add", "198.51.100.2/32", "via", UNDERLAY_B, "dev", &underlay_a, "metric", "100"]);
    tcp(&a.ns, TUNNEL_B).assert_ok("still through the tunnel while it is up");

    // Tunnel down: the same traffic would go out in the clear; it is dropped and reported.
    let down =
        Command::new(agent_bin()).args(["wg", "down", "--wg-interface", &a.iface]).output().expect("wg down");
    assert!(down.status.success(), "wg down: {}", String::from_utf8_lossy(&down.stderr));
    let before = ipv4_received(&b.ns);
    let r = tcp(&a.ns, TUNNEL_B);
    assert!(!r.ok && !r.is_eperm(), "plaintext to a peer must not get through: {r:?}");
    assert_eq!(ipv4_received(&b.ns), before, "plaintext packets for B reached B");
    let ev = a.agent().wait_for_event("plaintext leak", Duration::from_secs(5), |v| {
        v["dst"] == TUNNEL_B && v["verdict"] == "plaintext-drop"
    });
    assert_eq!(ev["hook"], "rf_tc_egress", "{ev}");
    // A destination that is not a peer is unaffected: B's underlay address in the clear.
    tcp(&a.ns, UNDERLAY_B).assert_ok("plaintext to an address that need not be encrypted");
}
