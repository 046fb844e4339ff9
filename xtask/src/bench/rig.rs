//! The benchmark rig: a lab with a fast accept server in the world namespace, a client that
//! times connect() from inside the node namespace, and three conditions compared in interleaved
//! rounds: no program (client in a plain sibling cgroup), Ringfence (client in the enforced
//! cgroup), and nftables doing the same job (a verdict map of the same prefixes, toggled by a jump
//! rule while the map stays loaded).
use std::{
    ffi::OsString,
    net::{SocketAddr, TcpStream},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use ringfence_tests::{agent::AgentProc, cgroup::TestCgroup, Lab};

use crate::util::{cargo, is_root, run, workspace_root};

/// The destination every condition connects to (allowed by every benchmark policy).
pub const DEST: &str = "198.51.100.10";
pub const PORT: u16 = 443;

/// Pins the calling process to one CPU (client and server each get their own), which removes
/// most of the run-to-run variance from scheduling on a small machine.
fn pin_to_cpu(cpu: usize) {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET and sched_setaffinity on our own pid.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu % n, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set);
    }
}

/// Hidden server mode: `xtask bench-server PORT` accepts and closes connections as fast as it can
/// (a deep backlog and no thread per connection, so the accept queue never overflows and no
/// connect() waits for a SYN retransmission).
pub fn server(port: u16) -> Result<()> {
    pin_to_cpu(1);
    let listener = std::net::TcpListener::bind(("::", port)).with_context(|| format!("bind [::]:{port}"))?;
    // SAFETY: listen(2) on our own listening socket, raising the backlog.
    if unsafe { libc::listen(listener.as_raw_fd(), 4096) } != 0 {
        bail!("listen: {}", std::io::Error::last_os_error());
    }
    println!("ready");
    // While connections keep coming, spin instead of sleeping in accept(): a sleeping server
    // is woken by an IPI sent from the client's CPU inside its connect() (the handshake
    // completes in the client's softirq), and on a VM that wakeup costs ~10 µs, or nothing when
    // the server happened to be awake: rounds fell into a fast and a slow mode (8 or 20 µs)
    // whatever the condition. After SPIN without a connection the server sleeps in poll(), so
    // it takes no CPU from the throughput benchmarks.
    const SPIN: std::time::Duration = std::time::Duration::from_millis(200);
    listener.set_nonblocking(true).context("non-blocking listener")?;
    let mut last = Instant::now();
    loop {
        match listener.accept() {
            Ok(conn) => {
                drop(conn);
                last = Instant::now();
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && last.elapsed() < SPIN => {
                std::hint::spin_loop()
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let mut fd = libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 };
                // SAFETY: one valid pollfd for our own listening socket; no timeout.
                unsafe { libc::poll(&mut fd, 1, -1) };
                last = Instant::now();
            }
            Err(_) => {}
        }
    }
}

/// Hidden client mode: `xtask bench-client ADDR PORT N` prints the median connect() time in ns.
pub fn client(addr: &str, port: u16, n: usize) -> Result<()> {
    pin_to_cpu(0);
    let sa: SocketAddr = format!("{addr}:{port}").parse()?;
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        let s = TcpStream::connect(sa).with_context(|| format!("connect {sa}"))?;
        times.push(t0.elapsed().as_nanos() as u64);
        // RST on close: no TIME_WAIT pile-up across thousands of connections.
        let linger = libc::linger { l_onoff: 1, l_linger: 0 };
        // SAFETY: setsockopt on our own socket with a correctly sized linger struct.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                size_of::<libc::linger>() as u32,
            );
        }
    }
    times.sort_unstable();
    println!("{}", times[times.len() / 2]);
    Ok(())
}

/// Kills a helper process when the benchmark ends, however it ends.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What nftables does in the comparison: a verdict per prefix, and a verdict for the rest.
pub struct NftJob {
    /// (CIDR, accept?)
    pub prefixes: Vec<(String, bool)>,
    pub otherwise_accept: bool,
}

impl NftJob {
    fn script(&self) -> String {
        let verdict = |a: bool| if a { "accept" } else { "drop" };
        let (v6, v4): (Vec<&(String, bool)>, Vec<_>) =
            self.prefixes.iter().partition(|(c, _)| c.contains(':'));
        let elems = |v: &[&(String, bool)], fallback: &str| {
            let mut items: Vec<String> = v.iter().map(|(c, a)| format!("{c} : {}", verdict(*a))).collect();
            if items.is_empty() {
                items.push(fallback.to_string());
            }
            items.join(",\n")
        };
        format!(
            "table inet rf_bench {{\n map geo4 {{ type ipv4_addr : verdict; flags interval; elements = {{ {} }} }}\n map geo6 {{ type ipv6_addr : verdict; flags interval; elements = {{ {} }} }}\n chain out {{ type filter hook output priority 0; policy accept; }}\n chain check {{ oifname \"lo\" accept; ct state established,related accept; meta l4proto ipv6-icmp accept; ip daddr vmap @geo4; ip6 daddr vmap @geo6; {}; }}\n}}\n",
            elems(&v4, "198.51.100.0/24 : accept"),
            elems(&v6, "2001:db8:10::/48 : accept"),
            verdict(self.otherwise_accept),
        )
    }
}

/// Median latencies (µs) of one comparison.
pub struct Comparison {
    pub none: f64,
    pub ringfence: f64,
    pub nftables: f64,
    pub nft_load: Duration,
}

/// The median of a set of measurements (the upper one for an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}

/// Where each condition of a comparison runs its client, and nftables' table.
pub struct Conditions<'a> {
    pub ours: &'a TestCgroup,
    pub theirs: &'a TestCgroup,
    pub nft_script: &'a str,
    pub conntrack: Conntrack,
}

/// Who pays for connection tracking, which nftables' `ct state` rule needs (Ringfence does not).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Conntrack {
    /// It runs in every condition (the table stays loaded; only the jump rule toggles), as on a
    /// node where something else (kube-proxy, Docker, a firewall) already tracks connections:
    /// the comparison is of the rules alone.
    Everywhere,
    /// Only while nftables is measured (its table is loaded for its rounds only): nftables
    /// brings the connection tracking its rules need.
    NftOnly,
}

/// The lab, the sibling cgroup and the server.
pub struct Rig {
    pub lab: Lab,
    plain: TestCgroup,
    _server: KillOnDrop,
    pub release: PathBuf,
    pub dir: PathBuf,
}

impl Rig {
    /// Checks root and setup, builds release binaries, creates the lab and starts the server.
    pub fn new(name: &str) -> Result<Rig> {
        crate::setup::setup(false)?;
        if !is_root() {
            bail!("the benchmark creates network namespaces, cgroups and BPF programs: run it as root");
        }
        run(cargo().args([
            "build",
            "--quiet",
            "--release",
            "-p",
            "ringfence-agent",
            "-p",
            "ringfence-tests",
            "--bins",
        ]))?;
        let release = workspace_root().join("target/release");
        let lab = Lab::with_probe(name, release.join("lab-probe"));
        let server = Self::start_server(&lab)?;
        let dir = crate::demo::tempdir()?;
        Ok(Rig { lab, plain: TestCgroup::new(), _server: server, release, dir })
    }

    fn start_server(lab: &Lab) -> Result<KillOnDrop> {
        use std::io::BufRead;
        let mut child = lab
            .world_ns()
            .command(std::env::current_exe()?)
            .args(["bench-server", &PORT.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .context("spawn bench server")?;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line)?;
        if line.trim() != "ready" {
            bail!("bench server did not start: {line:?}");
        }
        Ok(KillOnDrop(child))
    }

    /// Where the agent pins.
    pub fn bpffs(&self) -> PathBuf {
        self.lab.bpffs_path().join("ringfence")
    }

    /// Runs `ringfence-agent ARGS --bpffs <the rig's pins>` (release build).
    pub fn agent_cli(&self, args: &[&str]) -> std::io::Result<std::process::Output> {
        Command::new(self.release.join("ringfence-agent"))
            .args(args)
            .arg("--bpffs")
            .arg(self.bpffs())
            .output()
    }

    /// Starts the release agent inside the node namespace (where the uplink is) and waits until
    /// it enforces.
    pub fn agent_in_node(&self, policy: &Path, extra: &[OsString]) -> AgentProc {
        let mut args: Vec<OsString> = vec![
            "run".into(),
            "--policy".into(),
            policy.into(),
            "--cgroup".into(),
            self.lab.cgroup_path().into(),
            "--bpffs".into(),
            self.bpffs().into(),
        ];
        args.extend(extra.iter().cloned());
        let cmd = self.lab.node_ns().command(self.release.join("ringfence-agent"));
        let a = AgentProc::spawn_command(cmd, &args, false);
        a.wait_for_message("enforcing", Duration::from_secs(300));
        a
    }

    /// Starts the release agent on the lab cgroup (no packet path, so it accepts a kernel
    /// without the packet-socket guard) and waits until it enforces.
    pub fn agent(&self, policy: &Path, extra: &[OsString]) -> AgentProc {
        let mut args = extra.to_vec();
        args.push("--allow-weaker-isolation".into());
        let a = AgentProc::spawn_with(
            &self.release.join("ringfence-agent"),
            policy,
            self.lab.cgroup_path(),
            &self.bpffs(),
            &args,
            false,
        );
        a.wait_for_message("enforcing", Duration::from_secs(300));
        a
    }

    fn nft(&self, args: &[&str], stdin: Option<&str>) -> Result<()> {
        use std::io::Write;
        let mut child = self
            .lab
            .node_ns()
            .command("nft")
            .args(args)
            .stdin(Stdio::piped())
            .spawn()
            .context("spawn nft")?;
        if let Some(s) = stdin {
            child.stdin.take().expect("stdin").write_all(s.as_bytes())?;
        }
        let st = child.wait()?;
        if !st.success() {
            bail!("nft {args:?} failed: {st}");
        }
        Ok(())
    }

    pub fn measure(&self, cg: &TestCgroup, connects: usize) -> Result<f64> {
        let out = self
            .lab
            .node_command_in(cg, std::env::current_exe()?)
            .args(["bench-client", DEST, &PORT.to_string(), &connects.to_string()])
            .output()?;
        if !out.status.success() {
            bail!("bench client failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().parse::<f64>()? / 1000.0)
    }

    /// Loads `job` into nftables, then measures the three conditions in `rounds` interleaved
    /// rounds (the order rotates so drift in machine load favours none); the agent must already
    /// enforce the equivalent policy on the lab cgroup.
    pub fn compare(&self, job: &NftJob, rounds: usize, connects: usize) -> Result<Comparison> {
        let set = Conditions {
            ours: self.lab.cgroup(),
            theirs: &self.plain,
            nft_script: &job.script(),
            conntrack: Conntrack::Everywhere,
        };
        self.compare_in(&set, rounds, connects)
    }

    /// [`Rig::compare`] with the client's cgroups and the nftables table given: Ringfence is
    /// measured in `ours`, nftables in `theirs`, no program in the plain sibling cgroup. The
    /// script defines table `inet rf_bench` with an empty `out` chain (hook output) and a
    /// `check` chain that `out` jumps to while nftables is measured; with
    /// [`Conntrack::NftOnly`] the whole table exists only during nftables' rounds.
    pub fn compare_in(&self, c: &Conditions, rounds: usize, connects: usize) -> Result<Comparison> {
        let t = Instant::now();
        self.nft(&["-f", "-"], Some(c.nft_script))?;
        let nft_load = t.elapsed();
        let per_round = c.conntrack == Conntrack::NftOnly;
        if per_round {
            self.nft(&["delete", "table", "inet", "rf_bench"], None)?;
        }
        let (mut none, mut ours, mut theirs) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            for k in 0..3 {
                match (round + k) % 3 {
                    0 => none.push(self.measure(&self.plain, connects)?),
                    1 => ours.push(self.measure(c.ours, connects)?),
                    _ => {
                        if per_round {
                            self.nft(&["-f", "-"], Some(c.nft_script))?;
                        }
                        self.nft(&["add", "rule", "inet", "rf_bench", "out", "jump", "check"], None)?;
                        theirs.push(self.measure(c.theirs, connects)?);
                        if per_round {
                            self.nft(&["delete", "table", "inet", "rf_bench"], None)?;
                        } else {
                            self.nft(&["flush", "chain", "inet", "rf_bench", "out"], None)?;
                        }
                    }
                }
            }
        }
        if !per_round {
            self.nft(&["delete", "table", "inet", "rf_bench"], None)?;
        }
        Ok(Comparison { none: median(none), ringfence: median(ours), nftables: median(theirs), nft_load })
    }
}

/// The cgroup programs this round added to the connect hooks (the backstop and its helpers, the
/// socket guards): detaching them gives the connect-hooks-only ("before") configuration.
pub const ADDED_HOOKS: [&str; 4] = ["rf_skb_egress", "rf_sock_create", "rf_setsockopt", "rf_socket_create"];

impl Rig {
    /// Detaches pinned cgroup links by name (removing a link's pin detaches its program).
    pub fn detach_links(&self, names: &[&str]) -> Result<()> {
        let links = self.bpffs().join("links");
        for name in names {
            let pin = links.join(name);
            if pin.exists() {
                std::fs::remove_file(&pin).with_context(|| format!("unpin {}", pin.display()))?;
            }
        }
        Ok(())
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = self.agent_cli(&["detach"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
