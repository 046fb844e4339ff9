//! The two-namespace lab: a "node" (where the agent's cgroup hooks apply to
//! probes) and a "world" (which owns the remote addresses and runs servers).
//!
//! ```text
//!  node netns                         world netns
//!  rfn<id> 192.0.2.1/24      <veth>   rfw<id> 192.0.2.2/24
//!          2001:db8:1::1/64                   2001:db8:1::2/64
//!  default via 192.0.2.2 / ::2        lo: WORLD_V4 (/32), WORLD_V6 (/128)
//! ```

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::addrs::{is_documentation_addr, NODE_V4, NODE_V6, WORLD_GW_V4, WORLD_GW_V6, WORLD_V4, WORLD_V6};
use crate::bpffs::Bpffs;
use crate::cgroup::TestCgroup;
use crate::cleanup::cleanup_stale;
use crate::netns::{place_command, NetNs};

use crate::probe::{probe_bin, ProbeResult};
use crate::util::next_id;

/// Node netns + world netns + veth pair + test cgroup + private bpffs.
///
/// Drop kills the world servers, then every process in the test cgroup,
/// removes the cgroup, unmounts the bpffs and deletes both namespaces.
#[derive(Debug)]
pub struct Lab {
    name: String,
    probe: PathBuf,
    node_if: String,
    world_if: String,
    servers: Vec<Child>,
    // Dropped in this order after `Drop::drop` stops the servers.
    cgroup: TestCgroup,
    bpffs: Bpffs,
    node: NetNs,
    world: NetNs,
}

impl Lab {
    /// Builds a lab, locating `lab-probe` with [`probe_bin`] (env
    /// `RINGFENCE_LAB_PROBE`, else next to / one level above the test
    /// executable). Also removes leftovers of dead test processes
    /// ([`crate::cleanup_stale`]). Panics on any failure.
    pub fn new(name: &str) -> Lab {
        Lab::with_probe(name, probe_bin())
    }

    /// Like [`Lab::new`] with an explicit `lab-probe` path.
    pub fn with_probe(name: &str, probe: PathBuf) -> Lab {
        cleanup_stale();
        let world = NetNs::new(&format!("{name}-w"));
        let node = NetNs::new(&format!("{name}-n"));
        for ns in [&node, &world] {
            for key in ["all", "default"] {
                ns.sysctl(&format!("net.ipv6.conf.{key}.disable_ipv6"), "0");
                ns.sysctl(&format!("net.ipv6.conf.{key}.accept_dad"), "0");
            }
        }
        // <= 15 chars: "rfn" + pid in hex (<= 6) + counter (2 hex digits).
        let id = format!("{:x}{:02x}", std::process::id(), next_id() & 0xff);
        let (node_if, world_if) = (format!("rfn{id}"), format!("rfw{id}"));
        // Created inside the node netns: nothing ever appears in the root netns.
        node.ip(&["link", "add", &node_if, "type", "veth", "peer", "name", &world_if, "netns", world.name()]);
        node.ip(&["link", "set", &node_if, "up"]);
        world.ip(&["link", "set", &world_if, "up"]);
        node.ip(&["addr", "add", &format!("{NODE_V4}/24"), "dev", &node_if]);
        node.ip(&["-6", "addr", "add", &format!("{NODE_V6}/64"), "dev", &node_if, "nodad"]);
        world.ip(&["addr", "add", &format!("{WORLD_GW_V4}/24"), "dev", &world_if]);
        world.ip(&["-6", "addr", "add", &format!("{WORLD_GW_V6}/64"), "dev", &world_if, "nodad"]);
        node.ip(&["route", "add", "default", "via", WORLD_GW_V4, "dev", &node_if]);
        node.ip(&["-6", "route", "add", "default", "via", WORLD_GW_V6, "dev", &node_if]);
        for a in WORLD_V4 {
            world.ip(&["addr", "add", &format!("{a}/32"), "dev", "lo"]);
        }
        for a in WORLD_V6 {
            world.ip(&["-6", "addr", "add", &format!("{a}/128"), "dev", "lo", "nodad"]);
        }
        Lab {
            name: name.to_string(),
            probe,
            node_if,
            world_if,
            servers: Vec::new(),
            cgroup: TestCgroup::new(),
            bpffs: Bpffs::new(),
            node,
            world,
        }
    }

    /// The name given to [`Lab::new`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The node namespace (probes run here).
    pub fn node_ns(&self) -> &NetNs {
        &self.node
    }

    /// The world namespace (owns `WORLD_V4`/`WORLD_V6`, runs servers).
    pub fn world_ns(&self) -> &NetNs {
        &self.world
    }

    /// The test cgroup directory; attach the agent here (`--cgroup`).
    pub fn cgroup_path(&self) -> &Path {
        self.cgroup.path()
    }

    /// The test cgroup guard.
    pub fn cgroup(&self) -> &TestCgroup {
        &self.cgroup
    }

    /// The private bpffs mount; give it to the agent as `--bpffs`.
    pub fn bpffs_path(&self) -> &Path {
        self.bpffs.path()
    }

    /// Veth interface names `(node side, world side)`.
    pub fn veth_names(&self) -> (&str, &str) {
        (&self.node_if, &self.world_if)
    }

    /// The `lab-probe` binary in use.
    pub fn probe_path(&self) -> &Path {
        &self.probe
    }

    /// Adds another world host (`/32` or `/128` on the world's `lo`). Must
    /// be a documentation address. Call before [`Lab::start_world_servers`]
    /// so UDP replies come from that address.
    pub fn add_world_host(&self, addr: &str) {
        let ip: IpAddr = addr.parse().unwrap_or_else(|e| panic!("world host {addr}: {e}"));
        assert!(is_documentation_addr(ip), "world host {addr} is not a documentation address");
        match ip {
            IpAddr::V4(_) => self.world.ip(&["addr", "add", &format!("{addr}/32"), "dev", "lo"]),
            IpAddr::V6(_) => {
                self.world.ip(&["-6", "addr", "add", &format!("{addr}/128"), "dev", "lo", "nodad"])
            }
        };
    }

    /// Starts `lab-probe serve` in the world netns (not in the test cgroup)
    /// on `ports` for TCP and UDP, dual-stack, and waits for it to print
    /// "ready". TCP replies `pong <bytes read>`, UDP replies `pong`. Killed
    /// on drop. May be called more than once with different ports.
    pub fn start_world_servers(&mut self, ports: &[u16]) {
        let cmd = self.world.command(&self.probe);
        self.start_servers(cmd, ports, "world netns");
    }

    /// Starts `lab-probe serve` on `ports` in the node netns inside `cgroup` (a workload's
    /// listener), as [`Lab::start_world_servers`] does in the world.
    pub fn start_node_servers_in(&mut self, cgroup: &TestCgroup, ports: &[u16]) {
        let cmd = self.node_command_in(cgroup, &self.probe);
        self.start_servers(cmd, ports, "node netns");
    }

    fn start_servers(&mut self, mut cmd: Command, ports: &[u16], place: &str) {
        assert!(!ports.is_empty(), "servers need at least one port");
        let list = ports.iter().map(u16::to_string).collect::<Vec<_>>().join(",");
        cmd.args(["serve", "--tcp", &list, "--udp", &list])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child =
            cmd.spawn().unwrap_or_else(|e| panic!("spawn `{} serve` in {place}: {e}", self.probe.display()));
        let stdout = child.stdout.take().expect("server stdout pipe");
        self.servers.push(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(line) if line.trim() == "ready" => {}
            Ok(line) => panic!("{place} servers on {list} did not start (said {line:?})"),
            Err(_) => panic!("{place} servers on {list} not ready within 10 s"),
        }
    }

    /// A [`Command`] for `program` that runs in the node netns and inside
    /// the test cgroup (the child joins both in `pre_exec`, before exec).
    pub fn node_command<S: AsRef<std::ffi::OsStr>>(&self, program: S) -> Command {
        self.node_command_in(&self.cgroup, program)
    }

    /// Like [`Lab::node_command`], but in another cgroup (e.g. an unenforced
    /// sibling used as a baseline).
    pub fn node_command_in<S: AsRef<std::ffi::OsStr>>(&self, cgroup: &TestCgroup, program: S) -> Command {
        let procs = OpenOptions::new()
            .write(true)
            .open(cgroup.procs_path())
            .unwrap_or_else(|e| panic!("open {}: {e}", cgroup.procs_path().display()));
        let mut cmd = Command::new(program);
        place_command(&mut cmd, Some(self.node.open()), Some(procs));
        cmd
    }

    /// Like [`Lab::node_command_in`], running as the unprivileged `uid` (its gid the same number)
    /// once it is in the namespace and the cgroup.
    pub fn node_command_as<S: AsRef<std::ffi::OsStr>>(
        &self,
        cgroup: &TestCgroup,
        uid: u32,
        program: S,
    ) -> Command {
        let procs = OpenOptions::new()
            .write(true)
            .open(cgroup.procs_path())
            .unwrap_or_else(|e| panic!("open {}: {e}", cgroup.procs_path().display()));
        let mut cmd = Command::new(program);
        crate::netns::place_command_as(&mut cmd, Some(self.node.open()), Some(procs), Some(uid));
        cmd
    }

    /// Runs `lab-probe args…` in the node netns + test cgroup and parses its
    /// JSON line, e.g. `lab.probe(&["tcp", "198.51.100.10", "443"])`.
    pub fn probe(&self, args: &[&str]) -> ProbeResult {
        run_probe(self.node_command(&self.probe), args, "node netns/cgroup")
    }

    /// Uploads `bytes` to `addr:port` with `lab-probe stream` (paced at `rate` bytes/s when
    /// given) and returns its final line. A transfer the kernel stops shows as stalled (nothing
    /// taken for 1.5 s); one that got out whole ends with all bytes sent.
    pub fn upload(&self, addr: &str, port: u16, bytes: u64, rate: Option<u64>) -> serde_json::Value {
        let (port, bytes) = (port.to_string(), bytes.to_string());
        let mut args =
            vec!["stream", addr, &port, "--bytes", &bytes, "--stall-ms", "1500", "--timeout-ms", "30000"];
        let rate = rate.map(|r| r.to_string());
        if let Some(r) = rate.as_deref() {
            args.extend(["--rate", r]);
        }
        self.probe_json(&args)
    }

    /// Runs `lab-probe args…` in the node netns and the test cgroup; returns its last stdout
    /// line as JSON (for commands that report more than an exchange: `stream`, `tunnel`).
    pub fn probe_json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.node_command(&self.probe).args(args).output().expect("run lab-probe");
        let text = String::from_utf8_lossy(&out.stdout);
        let last = text.lines().last().unwrap_or_default();
        serde_json::from_str(last).unwrap_or_else(|_| panic!("lab-probe {args:?} said {text:?}"))
    }

    /// Runs `lab-probe args…` in the node netns inside `cgroup`.
    pub fn probe_in(&self, cgroup: &TestCgroup, args: &[&str]) -> ProbeResult {
        run_probe(self.node_command_in(cgroup, &self.probe), args, &cgroup.path().display().to_string())
    }

    /// Like [`Lab::probe_in`], as the unprivileged `uid`.
    pub fn probe_in_as(&self, cgroup: &TestCgroup, uid: u32, args: &[&str]) -> ProbeResult {
        let place = format!("{} as uid {uid}", cgroup.path().display());
        run_probe(self.node_command_as(cgroup, uid, &self.probe), args, &place)
    }

    /// Runs `lab-probe args…` in the world netns (another node, the internet).
    pub fn world_probe(&self, args: &[&str]) -> ProbeResult {
        run_probe(self.world.command(&self.probe), args, "the world")
    }

    /// TCP probe: connect, send "ping", expect `pong 4`.
    pub fn tcp(&self, addr: &str, port: u16) -> ProbeResult {
        self.probe(&["tcp", addr, &port.to_string()])
    }

    /// UDP probe with unconnected `sendto` (sendmsg4/6 hooks).
    pub fn udp(&self, addr: &str, port: u16) -> ProbeResult {
        self.probe(&["udp", addr, &port.to_string()])
    }

    /// UDP probe with `connect` + `send` (connect4/6 hooks).
    pub fn udp_connected(&self, addr: &str, port: u16) -> ProbeResult {
        self.probe(&["udp", addr, &port.to_string(), "--connect"])
    }

    /// Spawns a long-running `lab-probe args…` (e.g. `loop`) in the node
    /// netns + test cgroup with stdout/stderr piped. Collect it with
    /// `wait_with_output()` and [`crate::LoopReport::from_output`]; if left
    /// running, it is killed when the lab's cgroup is torn down.
    pub fn spawn_probe(&self, args: &[&str]) -> Child {
        self.spawn_probe_in(&self.cgroup, args)
    }

    /// Like [`Lab::spawn_probe`], in another cgroup (e.g. a workload under the lab's cgroup).
    pub fn spawn_probe_in(&self, cgroup: &TestCgroup, args: &[&str]) -> Child {
        self.node_command_in(cgroup, &self.probe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn lab-probe {}: {e}", args.join(" ")))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in &mut self.servers {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Fields drop next: cgroup (kills probes), bpffs, node, world.
    }
}

/// Runs a prepared `lab-probe` command with `args` and parses its JSON line; `place` says where
/// it runs, for messages.
fn run_probe(mut cmd: Command, args: &[&str], place: &str) -> ProbeResult {
    let what = format!("lab-probe {} (in {place})", args.join(" "));
    let out = cmd.args(args).stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{what}: spawn: {e}"));
    ProbeResult::from_output(&what, &out)
}
