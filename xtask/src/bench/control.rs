//! `cargo xtask bench-control`: 1,000 simulated agents (one process, one HTTPS client each,
//! `control-plane/examples/fanout.rs`) long-poll one control plane; the time from `policy apply`
//! to every agent having verified and acknowledged the new bundle (p50, p99, max), then the event
//! ingest rate. Both storage backends in one run: SQLite (the default) and PostgreSQL (a
//! throwaway cluster from Debian's package).
use anyhow::{bail, Context, Result};
use ringfence_tests::postgres::PgCluster;

use crate::util::cargo;

#[derive(clap::Args)]
pub struct ControlBenchArgs {
    /// Simulated agents.
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    /// Events for the ingest measurement.
    #[arg(long, default_value_t = 20_000)]
    events: usize,
}

fn fanout(args: &ControlBenchArgs, db: Option<&str>) -> Result<Vec<String>> {
    let (agents, events) = (args.agents.to_string(), args.events.to_string());
    let mut cmd = cargo();
    cmd.args(["run", "--quiet", "--release", "-p", "ringfence-control", "--example", "fanout", "--"]);
    cmd.args([agents.as_str(), events.as_str()]).args(db);
    let out = cmd.stderr(std::process::Stdio::inherit()).output().context("running the fanout example")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    print!("{text}");
    if !out.status.success() {
        bail!("the fanout example failed ({})", out.status);
    }
    Ok(text.lines().map(str::to_owned).collect())
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
    println!("\nbench-control results ({} agents):", args.agents);
    for (backend, lines) in [("SQLite", sqlite), ("PostgreSQL", postgres)] {
        for l in lines.iter().filter(|l| l.contains("p99") || l.contains("ingest")) {
            println!("  {backend}: {l}");
        }
    }
    Ok(())
}
