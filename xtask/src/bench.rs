//! `cargo xtask bench`: connect() latency with the policy loaded at 1k, 100k and 400k prefixes,
//! against no program and against nftables doing the same job (interval sets of the same prefixes
//! in an output chain), all in one run, rounds interleaved so machine noise hits every condition.
//!
//! The baseline and ringfence conditions differ only in the client's cgroup (the programs are
//! attached to one cgroup, the baseline client runs in a sibling); nftables is toggled by a jump
//! rule while its sets stay loaded.
use std::{
    fmt::Write as _,
    net::{SocketAddr, TcpStream},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use ringfence_tests::{agent::AgentProc, cgroup::TestCgroup, Lab};

use crate::util::{cargo, is_root, output, run, workspace_root};

const DEST: &str = "198.51.100.10";
const PORT: u16 = 443;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Prefix counts to load (taken from iptoasn-country; the largest also takes its IPv6 list).
    #[arg(long, value_delimiter = ',', default_value = "1000,100000,400000")]
    sizes: Vec<usize>,
    /// Interleaved rounds per size.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// connect() calls per measurement.
    #[arg(long, default_value_t = 2000)]
    connects: usize,
    /// Directory with the geo data (default: ../shared/geo beside the workspace).
    #[arg(long)]
    geo: Option<PathBuf>,
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
    loop {
        drop(listener.accept());
    }
}

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

/// Kills a helper process when the benchmark ends, however it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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

fn prefixes(geo: &Path, n: usize) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for fam in ["ipv4", "ipv6"] {
        let f = geo.join(format!("iptoasn-country/iptoasn-country-cidr-{fam}.csv.gz"));
        let text = output(Command::new("gzip").arg("-dc").arg(&f))
            .with_context(|| format!("reading {}", f.display()))?;
        out.extend(
            text.lines().skip(1).filter_map(|l| l.split(',').next()).map(str::to_string).take(n - out.len()),
        );
        if out.len() >= n {
            break;
        }
    }
    Ok(out)
}

fn policy_yaml(cidrs: &[String]) -> String {
    let mut s = String::from("apiVersion: ringfence.dev/v1\nkind: EgressPolicy\nmetadata: { name: bench }\nspec:\n  defaultAction: deny\n  egress:\n    - name: bench-allow\n      action: allow\n      to:\n        cidrs:\n          - 198.51.100.0/24\n");
    for c in cidrs {
        let _ = writeln!(s, "          - \"{c}\"");
    }
    s
}

fn nft_script(cidrs: &[String]) -> String {
    let (v6, v4): (Vec<&String>, Vec<&String>) = cidrs.iter().partition(|c| c.contains(':'));
    let join = |v: &[&String]| v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",\n");
    format!(
        "table inet rf_bench {{\n set allow4 {{ type ipv4_addr; flags interval; auto-merge; elements = {{ 198.51.100.0/24{}{} }} }}\n set allow6 {{ type ipv6_addr; flags interval; auto-merge; elements = {{ 2001:db8:10::/48{}{} }} }}\n chain out {{ type filter hook output priority 0; policy accept; }}\n chain check {{ oifname \"lo\" accept; ct state established,related accept; meta l4proto ipv6-icmp accept; ip daddr @allow4 accept; ip6 daddr @allow6 accept; drop; }}\n}}\n",
        if v4.is_empty() { "" } else { ",\n" }, join(&v4),
        if v6.is_empty() { "" } else { ",\n" }, join(&v6),
    )
}

fn nft(lab: &Lab, args: &[&str], stdin: Option<&str>) -> Result<()> {
    use std::io::Write;
    let mut child =
        lab.node_ns().command("nft").args(args).stdin(Stdio::piped()).spawn().context("spawn nft")?;
    if let Some(s) = stdin {
        child.stdin.take().expect("stdin").write_all(s.as_bytes())?;
    }
    let st = child.wait()?;
    if !st.success() {
        bail!("nft {args:?} failed: {st}");
    }
    Ok(())
}

fn measure(lab: &Lab, cg: &TestCgroup, connects: usize) -> Result<f64> {
    let xtask = std::env::current_exe()?;
    let out = lab
        .node_command_in(cg, &xtask)
        .args(["bench-client", DEST, &PORT.to_string(), &connects.to_string()])
        .output()?;
    if !out.status.success() {
        bail!("bench client failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse::<f64>()? / 1000.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}

pub fn bench(args: BenchArgs) -> Result<()> {
    crate::setup::setup(false)?;
    if !is_root() {
        bail!("the benchmark creates network namespaces, cgroups and BPF programs: run it as root");
    }
    let geo = args.geo.clone().unwrap_or_else(|| workspace_root().join("../shared/geo"));
    if !geo.join("iptoasn-country").is_dir() {
        bail!("geo data not found at {} (needs iptoasn-country/*.csv.gz; pass --geo DIR)", geo.display());
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
    let target = workspace_root().join("target/release");
    let lab = Lab::with_probe("bench", target.join("lab-probe"));
    let server = start_server(&lab)?;
    lab.node_ns().sysctl("net.ipv4.ip_local_port_range", "10000 65000");
    let plain = TestCgroup::new();
    let dir = crate::demo::tempdir()?;
    let policy = dir.join("bench-policy.yaml");
    let mut agent: Option<AgentProc> = None;
    let mut report = Vec::new();
    for &size in &args.sizes {
        let cidrs = prefixes(&geo, size)?;
        std::fs::write(&policy, policy_yaml(&cidrs))?;
        let t0 = Instant::now();
        match agent.as_mut() {
            None => {
                let a = AgentProc::spawn(
                    &target.join("ringfence-agent"),
                    &policy,
                    lab.cgroup_path(),
                    lab.bpffs_path(),
                    false,
                );
                a.wait_for_message("enforcing", Duration::from_secs(120));
                agent = Some(a);
            }
            Some(a) => {
                let applied = a.count("policy applied");
                a.hup();
                a.wait_for_count("policy applied", applied + 1, Duration::from_secs(120));
            }
        }
        let apply = t0.elapsed();
        let t1 = Instant::now();
        nft(&lab, &["-f", "-"], Some(&nft_script(&cidrs)))?;
        let nft_load = t1.elapsed();
        let (mut base, mut ours, mut theirs) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..args.rounds {
            // Rotate the order so drift in machine load does not favour one condition.
            for k in 0..3 {
                match (round + k) % 3 {
                    0 => base.push(measure(&lab, &plain, args.connects)?),
                    1 => ours.push(measure(&lab, lab.cgroup(), args.connects)?),
                    _ => {
                        nft(&lab, &["add", "rule", "inet", "rf_bench", "out", "jump", "check"], None)?;
                        theirs.push(measure(&lab, &plain, args.connects)?);
                        nft(&lab, &["flush", "chain", "inet", "rf_bench", "out"], None)?;
                    }
                }
            }
        }
        nft(&lab, &["delete", "table", "inet", "rf_bench"], None)?;
        let (b, o, t) = (median(base), median(ours), median(theirs));
        println!(
            "bench: {:>7} prefixes: no program {b:.1} µs, ringfence {o:.1} µs ({:.3}x), nftables {t:.1} µs ({:.3}x); ringfence/nftables {:.3}; agent apply {:.2} s, nft load {:.2} s",
            cidrs.len() + 1, o / b, t / b, o / t, apply.as_secs_f64(), nft_load.as_secs_f64()
        );
        report.push((cidrs.len() + 1, b, o, t));
    }
    if let Some(mut a) = agent {
        a.terminate();
    }
    let _ = Command::new(target.join("ringfence-agent"))
        .args(["detach", "--bpffs"])
        .arg(lab.bpffs_path())
        .status();
    drop(plain);
    drop(server);
    drop(lab);
    std::fs::remove_dir_all(&dir)?;
    println!("\nsummary (median connect() latency, {} rounds x {} connects):", args.rounds, args.connects);
    println!(
        "{:>9} {:>12} {:>12} {:>12} {:>10} {:>10}",
        "prefixes", "none µs", "ringfence µs", "nftables µs", "rf/none", "rf/nft"
    );
    for (n, b, o, t) in report {
        println!("{n:>9} {b:>12.1} {o:>12.1} {t:>12.1} {:>10.3} {:>10.3}", o / b, o / t);
    }
    Ok(())
}
