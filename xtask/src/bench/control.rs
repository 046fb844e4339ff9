//! `cargo xtask bench-control`: 1,000 simulated agents (one process, one HTTPS client each,
//! `control-plane/examples/fanout.rs`) long-poll one control plane; the time from `policy apply`
//! to every agent having verified and acknowledged the new bundle (p50, p99, max), the event
//! ingest rate, and ingest under a 10-node flood with a well-behaved node's alert-to-stored
//! latency. Both storage backends in one run: SQLite (the default) and PostgreSQL (a throwaway
//! cluster from Debian's package). Then `ringfence audit verify` of 1,000,000 audit records
//! against the real `ringfence-control` binary: its time and the peak memory of both processes.
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ringfence_tests::postgres::PgCluster;

use crate::util::{cargo, workspace_root};

#[derive(clap::Args)]
pub struct ControlBenchArgs {
    /// Simulated agents.
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    /// Events for the ingest measurement.
    #[arg(long, default_value_t = 20_000)]
    events: usize,
    /// Audit records for the verification measurement.
    #[arg(long, default_value_t = 1_000_000)]
    audit_records: u64,
}

pub(super) fn example(name: &str, args: &[&str]) -> Result<Vec<String>> {
    let mut cmd = cargo();
    cmd.args(["run", "--quiet", "--release", "-p", "ringfence-control", "--example", name, "--"]).args(args);
    let out = cmd.stderr(Stdio::inherit()).output().with_context(|| format!("running the {name} example"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    print!("{text}");
    if !out.status.success() {
        bail!("the {name} example failed ({})", out.status);
    }
    Ok(text.lines().map(str::to_owned).collect())
}

fn fanout(args: &ControlBenchArgs, db: Option<&str>) -> Result<Vec<String>> {
    let (agents, events) = (args.agents.to_string(), args.events.to_string());
    let mut argv = vec![agents.as_str(), events.as_str()];
    argv.extend(db);
    example("fanout", &argv)
}

/// Peak resident memory (kB) of a process so far, 0 once it is gone.
fn peak_kb(pid: u32) -> u64 {
    ringfence_tests::procfs::status_kb(pid, "VmHWM")
}

/// The control plane binary on a database of `n` audit records, and `ringfence audit verify`
/// against it: (seconds, CLI peak kB, server peak kB).
fn audit_verify(n: u64, dir: &Path) -> Result<(f64, u64, u64)> {
    let db = format!("sqlite://{}", dir.join("audit.db").display());
    example("audit_fill", &[&db, &n.to_string()])?;
    crate::util::run(cargo().args([
        "build",
        "--quiet",
        "--release",
        "-p",
        "ringfence-control",
        "-p",
        "ringfence-cli",
        "--bins",
    ]))?;
    let bin = workspace_root().join("target/release");
    let state = dir.join("state");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut server = Command::new(bin.join("ringfence-control"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--db", &db])
        .arg("--state-dir")
        .arg(&state)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting ringfence-control")?;
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if started.elapsed() > Duration::from_secs(30) {
            let _ = server.kill();
            bail!("ringfence-control did not listen");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let t0 = Instant::now();
    let mut cli = Command::new(bin.join("ringfence"))
        .args(["audit", "verify", "--server", &format!("https://127.0.0.1:{port}")])
        .arg("--ca")
        .arg(state.join("ca.pem"))
        .arg("--admin-token-file")
        .arg(state.join("admin.token"))
        .stdout(Stdio::piped())
        .spawn()
        .context("running ringfence audit verify")?;
    let mut cli_peak = 0;
    let status = loop {
        cli_peak = cli_peak.max(peak_kb(cli.id()));
        if let Some(status) = cli.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let secs = t0.elapsed().as_secs_f64();
    let server_peak = peak_kb(server.id());
    let _ = server.kill();
    let _ = server.wait();
    let mut out = String::new();
    std::io::Read::read_to_string(cli.stdout.as_mut().expect("piped"), &mut out)?;
    print!("{out}");
    if !status.success() || !out.contains(&format!("{n} records")) {
        bail!("audit verify failed ({status}): {out}");
    }
    Ok((secs, cli_peak, server_peak))
}

pub fn bench_control(args: ControlBenchArgs) -> Result<()> {
    crate::setup::setup(false)?;
    let sqlite = fanout(&args, None)?;
    let cluster = match PgCluster::start() {
        Ok(c) => c,
        Err(e) => bail!("PostgreSQL: {e}"),
    };
    let url = cluster.create_database("bench").map_err(anyhow::Error::msg)?;
    let postgres = fanout(&args, Some(&url))?;
    let dir = std::env::temp_dir().join(format!("ringfence-bench-audit-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let verified = audit_verify(args.audit_records, &dir);
    let _ = std::fs::remove_dir_all(&dir);
    let (secs, cli_kb, server_kb) = verified?;
    println!("\nbench-control results ({} agents):", args.agents);
    for (backend, lines) in [("SQLite", sqlite), ("PostgreSQL", postgres)] {
        for l in lines.iter().filter(|l| l.contains("p99") || l.contains("ingest")) {
            println!("  {backend}: {l}");
        }
    }
    println!(
        "  audit verify of {} records (SQLite, real binaries): {secs:.1} s; peak RSS: ringfence {} MiB, ringfence-control {} MiB",
        args.audit_records,
        cli_kb / 1024,
        server_kb / 1024
    );
    Ok(())
}
