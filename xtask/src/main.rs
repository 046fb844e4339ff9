//! Project tasks: `cargo xtask setup | test | demo | bench | cycles`.
mod bench;
mod bench_console;
mod cycles;
mod demo;
mod fuzz;
mod setup;
mod setup_console;
mod test;
mod util;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "Ringfence build, setup, lab and benchmark tasks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what the build and tests need (idempotent). With --check, only report.
    Setup {
        #[arg(long)]
        check: bool,
    },
    /// Setup, build, and run every test (privileged ones serially; needs root).
    Test {
        /// Extra arguments for the test harness (e.g. a test name filter).
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Live demo: a lab of network namespaces, the agent enforcing a policy, allowed and denied
    /// connections with their events; everything is cleaned up at the end.
    Demo,
    /// connect() latency with 1k/100k/400k prefixes vs no program vs nftables.
    Bench(bench::BenchArgs),
    /// Country policies on the full-size database: compile+swap time, entries, memory, latency.
    BenchGeo(bench::GeoBenchArgs),
    /// Single-stream TCP throughput with and without the packet path; cost per packet.
    BenchPath(bench::PathBenchArgs),
    /// Exfiltration budgets: single-stream throughput to an approved sink with budgets and a rate
    /// cap vs plain veth, the budget program's cost per packet, bytes past a budget.
    BenchBudget(bench::BudgetBenchArgs),
    /// Exfiltration detector: cost per poll at 100k flows, the agent with a full flow table,
    /// alert latency.
    BenchExfil(bench::ExfilBenchArgs),
    /// Fuzz the policy parser/compiler and bundle verifier (cargo-fuzz) and the control-plane
    /// API (schemathesis against its OpenAPI document); installs what it needs.
    Fuzz(fuzz::FuzzArgs),
    /// Control plane: 1,000 simulated agents, policy apply to all acknowledged (p50/p99), event
    /// ingest; SQLite and PostgreSQL.
    BenchControl(bench::ControlBenchArgs),
    /// Console pages in Debian's chromium with 1,000 nodes and 100k events: first contentful
    /// paint and time to data per page.
    BenchConsole,
    /// Live flow view: events delivered at 10,000/s while `ringfence observe -f` follows;
    /// every event must reach the stream (count checked); SQLite and PostgreSQL.
    BenchObserve(bench::ObserveBenchArgs),
    /// Per-workload policies: 1,000 workload cgroups and 64 policies, connect() latency vs no
    /// program vs nftables (socket cgroupv2), cgroup creation to own policy (p50/p99), memory.
    BenchWorkloads(bench::WorkloadBenchArgs),
    /// Domain names: DNS lookup latency with learning on vs off (p50/p99), connect() latency to
    /// learned addresses vs CIDR rules, learned-set memory per 100k addresses.
    BenchDns(bench::DnsBenchArgs),
    /// Fail, listing every cycle, if the modules of a crate import each other in a circle
    /// (e.g. `cargo xtask cycles policies/src`).
    Cycles {
        /// List every elementary cycle, not only the shortest cycle through each import.
        #[arg(long)]
        all: bool,
        /// Also print the imports between the modules of each directory.
        #[arg(long)]
        graph: bool,
        /// A crate's `src` directory (or the crate's directory); several may be given.
        #[arg(required = true)]
        dirs: Vec<std::path::PathBuf>,
    },
    /// (internal) connect() loop used by the benchmark inside the lab.
    #[command(hide = true)]
    BenchClient { addr: String, port: u16, count: usize },
    /// (internal) accept loop used by the benchmark inside the lab.
    #[command(hide = true)]
    BenchServer { port: u16 },
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Setup { check } => setup::setup(check),
        Cmd::Test { args } => test::test(&args),
        Cmd::Demo => demo::demo(),
        Cmd::BenchConsole => bench_console::bench_console(),
        Cmd::Bench(args) => bench::bench(args),
        Cmd::BenchGeo(args) => bench::bench_geo(args),
        Cmd::BenchPath(args) => bench::bench_path(args),
        Cmd::BenchBudget(args) => bench::bench_budget(args),
        Cmd::BenchExfil(args) => bench::bench_exfil(args),
        Cmd::BenchControl(args) => bench::bench_control(args),
        Cmd::BenchObserve(args) => bench::bench_observe(args),
        Cmd::BenchWorkloads(args) => bench::bench_workloads(args),
        Cmd::BenchDns(args) => bench::bench_dns(args),
        Cmd::Fuzz(args) => fuzz::fuzz(args),
        Cmd::Cycles { all, graph, dirs } => cycles::cycles(&dirs, cycles::Show { all, graph }),
        Cmd::BenchClient { addr, port, count } => bench::client(&addr, port, count),
        Cmd::BenchServer { port } => bench::server(port),
    }
}
