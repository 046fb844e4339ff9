//! A two-node WireGuard lab: node namespaces A and B joined by a veth underlay, each running the
//! agent with userspace WireGuard (boringtun-cli). Used by the WireGuard tests and benchmarks.
//!
//! ```text
//!  node A netns                        node B netns
//!  underlay 192.0.2.1/24     <veth>    underlay 192.0.2.2/24
//!  rfwga… 198.51.100.1/32   (UDP)      rfwgb… 198.51.100.2/32
//! ```
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};

use crate::{
    agent_bin, cleanup_stale, policy_head, probe_bin, AgentProc, Bpffs, NetNs, ProbeResult, TestCgroup,
};

pub const TUNNEL_A: &str = "198.51.100.1";
pub const TUNNEL_B: &str = "198.51.100.2";
pub const UNDERLAY_A: &str = "192.0.2.1";
pub const UNDERLAY_B: &str = "192.0.2.2";
pub const PORT: u16 = 51820;
pub const SERVICE_PORT: &str = "8443";
pub const SOCKET_DIR: &str = "/var/run/wireguard";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// boringtun-cli from PATH or ~/.cargo/bin (installed by `cargo xtask setup`).
pub fn boringtun() -> PathBuf {
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
pub fn boringtun_pids(iface: &str) -> Vec<i32> {
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
pub struct Node {
    pub iface: String,
    pub dir: PathBuf,
    pub agent: Option<AgentProc>,
    pub cgroup: TestCgroup,
    pub bpffs: Bpffs,
    pub ns: NetNs,
}

impl Node {
    pub fn new(tag: &str, ns: NetNs) -> Node {
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

    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    pub fn peers_file(&self) -> PathBuf {
        self.dir.join("peers.json")
    }

    /// `ringfence-agent wg pubkey` (generates the key on first use).
    pub fn pubkey(&self) -> String {
        let out = Command::new(agent_bin())
            .args(["wg", "pubkey", "--state-dir"])
            .arg(self.state_dir())
            .output()
            .expect("run wg pubkey");
        assert!(out.status.success(), "wg pubkey: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("utf8").trim().to_string()
    }

    /// Writes the peers file atomically (rename), so the agent never reads half a file.
    pub fn write_peers(&self, peers: &[(&str, &str, &str)]) {
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

    pub fn start_agent(&mut self, address: &str) {
        self.start_agent_with(address, &[]);
    }

    /// Like `start_agent`, with extra `run` arguments.
    pub fn start_agent_with(&mut self, address: &str, extra: &[String]) {
        let mut args: Vec<String> = vec![
            "run".into(),
            "--policy".into(),
            self.dir.join("policy.yaml").display().to_string(),
            "--wg-peers".into(),
            self.peers_file().display().to_string(),
        ];
        args.extend(self.common_args(address));
        args.extend(extra.iter().cloned());
        self.spawn(&args);
    }

    /// The agent under a control plane (`run --control`, after `ringfence-agent enroll` into
    /// this node's state dir): policy and peers come from bundles; it advertises its underlay
    /// endpoint `endpoint`.
    pub fn start_controlled(&mut self, address: &str, endpoint: &str) {
        let mut args: Vec<String> =
            vec!["run".into(), "--control".into(), "--wg-endpoint".into(), endpoint.into()];
        args.extend(self.common_args(address));
        self.spawn(&args);
    }

    /// cgroup, bpffs, WireGuard (userspace boringtun) and state-dir arguments of `run`.
    fn common_args(&self, address: &str) -> Vec<String> {
        vec![
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
            "--wg-backend".into(),
            "userspace".into(),
            "--wg-userspace-impl".into(),
            boringtun().display().to_string(),
            "--state-dir".into(),
            self.state_dir().display().to_string(),
            // WireGuard labs test the mesh: accept a kernel without the packet-socket guard.
            "--allow-weaker-isolation".into(),
        ]
    }

    fn spawn(&mut self, args: &[String]) {
        let agent = AgentProc::spawn_command(self.ns.command(agent_bin()), args, false);
        agent.wait_for_message("wireguard peers reconciled", Duration::from_secs(60));
        self.agent = Some(agent);
    }

    pub fn agent(&self) -> &AgentProc {
        self.agent.as_ref().expect("agent started")
    }

    pub fn ifindex(&self) -> u64 {
        let out = self.ns.ip(&["-j", "link", "show", "dev", &self.iface]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j link");
        v[0]["ifindex"].as_u64().expect("ifindex")
    }

    pub fn wg_show(&self, what: &str) -> String {
        let out = self.ns.exec(&["wg", "show", &self.iface, what]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Total bytes the device sent and received over all peers (`wg show IFACE transfer`).
    pub fn wg_transfer(&self) -> u64 {
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
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
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
pub struct Server(pub std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Two nodes with the underlay between them; agents not started.
pub fn mesh() -> (Node, Node) {
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

pub fn serve(ns: &NetNs) -> Server {
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

pub fn tcp(ns: &NetNs, addr: &str) -> ProbeResult {
    let out = ns
        .command(probe_bin())
        .args(["tcp", addr, SERVICE_PORT, "--timeout-ms", "3000"])
        .stdin(Stdio::null())
        .output()
        .expect("run lab-probe tcp");
    ProbeResult::from_output("lab-probe tcp", &out)
}

/// Retries a TCP probe for a while (the first packets wait for the handshake).
pub fn tcp_eventually(ns: &NetNs, addr: &str) -> ProbeResult {
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
pub fn counters(ns: &NetNs, dev: &str) -> (u64, u64, u64) {
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

pub fn underlay(node: &Node) -> String {
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

/// TCP segments the namespace received (IPv4 and IPv6 share the counter): exact for a test
/// that only sends TCP, whatever else (IGMP, neighbour discovery) happens on the link.
pub fn tcp_received(ns: &NetNs) -> u64 {
    let text = String::from_utf8_lossy(&ns.exec(&["cat", "/proc/net/snmp"]).stdout).into_owned();
    let mut rows = text.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (rows.next().expect("Tcp header"), rows.next().expect("Tcp values"));
    let col = names.split_whitespace().position(|n| n == "InSegs").expect("InSegs column");
    values.split_whitespace().nth(col).expect("InSegs value").parse().expect("number")
}
