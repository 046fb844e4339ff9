//! `cargo xtask bench-observe`: simulated agents deliver events at 10,000/s to one control plane
//! while the real `ringfence observe -f -o json` follows the stream
//! (`control-plane/examples/observe_bench.rs`); fails unless every delivered event reached the
//! stream (none lost, none missing). SQLite and PostgreSQL in one run.
use anyhow::{bail, Result};
use ringfence_tests::postgres::PgCluster;

use super::control::example;
use crate::util::{cargo, run, workspace_root};

#[derive(clap::Args)]
pub struct ObserveBenchArgs {
    /// Events per second, all nodes together.
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// How long to deliver.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Simulated nodes.
    #[arg(long, default_value_t = 20)]
    nodes: usize,
}

pub fn bench_observe(args: ObserveBenchArgs) -> Result<()> {
    crate::setup::setup(false)?;
    run(cargo().args(["build", "--quiet", "--release", "-p", "ringfence-cli", "--bin", "ringfence"]))?;
    let bin = workspace_root().join("target/release/ringfence");
    let (rate, seconds, nodes) = (args.rate.to_string(), args.seconds.to_string(), args.nodes.to_string());
    let bin = bin.to_str().expect("a UTF-8 path");
    let sqlite = example("observe_bench", &[bin, &rate, &seconds, &nodes])?;
    let cluster = match PgCluster::start() {
        Ok(c) => c,
        Err(e) => bail!("PostgreSQL: {e}"),
    };
    let url = cluster.create_database("bench_observe").map_err(anyhow::Error::msg)?;
    let postgres = example("observe_bench", &[bin, &rate, &seconds, &nodes, &url])?;
    println!("\nbench-observe results:");
    for (backend, lines) in [("SQLite", sqlite), ("PostgreSQL", postgres)] {
        for l in lines.iter().filter(|l| l.starts_with("observe:")) {
            println!("  {backend}: {l}");
        }
    }
    Ok(())
}
