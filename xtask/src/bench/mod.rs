//! `cargo xtask bench`: connect() latency with the policy loaded at 1k, 100k and 400k prefixes,
//! against no program and against nftables doing the same job, all in one run (see `rig`).
//! `cargo xtask bench-geo`: the same for country policies, plus compile and swap time, map entries
//! after aggregation and the agent's memory. `cargo xtask bench-dns`: domain-name learning on vs
//! off (lookup latency, connect latency, learned-set memory).
//! after aggregation and the agent's memory. `cargo xtask bench-budget`: the exfiltration
//! budgets' throughput ratio, cost per packet and bytes past a budget.
mod budget;
mod control;
mod dns;
mod exfil;
mod geo;
mod observe;
mod path;
mod rig;
mod workloads;

use std::{
    fmt::Write as _,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
pub use budget::{bench_budget, BudgetBenchArgs};
pub use control::{bench_control, ControlBenchArgs};
pub use dns::{bench_dns, DnsBenchArgs};
pub use exfil::{bench_exfil, ExfilBenchArgs};
pub use geo::{bench_geo, GeoBenchArgs};
pub use observe::{bench_observe, ObserveBenchArgs};
pub use path::{bench_path, PathBenchArgs};
pub use rig::{client, server};
use rig::{NftJob, Rig};
pub use workloads::{bench_workloads, WorkloadBenchArgs};

use crate::util::{output, workspace_root};

/// Options shared by both benchmarks.
#[derive(clap::Args, Clone)]
pub struct Rounds {
    /// Interleaved rounds per configuration (60 x 5,000: about a minute; runs of 12 x 2,000
    /// scattered from 0.90 to 1.22 on a 2-vCPU VM, these from 0.98 to 1.07).
    #[arg(long, default_value_t = 60)]
    rounds: usize,
    /// connect() calls per measurement.
    #[arg(long, default_value_t = 5000)]
    connects: usize,
    /// Directory with the geo data (default: ../shared/geo beside the workspace).
    #[arg(long)]
    geo: Option<std::path::PathBuf>,
}

impl Rounds {
    /// Repeats the result lines at the end, under the measurement settings.
    fn print_summary(&self, lines: &[String]) {
        println!(
            "\nsummary (median connect() latency, {} rounds x {} connects):",
            self.rounds, self.connects
        );
        lines.iter().for_each(|l| println!("  {l}"));
    }

    fn geo_dir(&self) -> Result<std::path::PathBuf> {
        let dir = self.geo.clone().unwrap_or_else(|| workspace_root().join("../shared/geo"));
        if !dir.join("iptoasn-country").is_dir() {
            bail!("geo data not found at {} (needs iptoasn-country/; pass --geo DIR)", dir.display());
        }
        Ok(dir)
    }
}

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Prefix counts to load (taken from iptoasn-country; the largest also takes its IPv6 list).
    #[arg(long, value_delimiter = ',', default_value = "1000,100000,400000")]
    sizes: Vec<usize>,
    #[command(flatten)]
    rounds: Rounds,
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

/// Prints one result line and returns it for the summary.
pub(crate) fn report(label: &str, c: &rig::Comparison, extra: &str) -> String {
    let line = format!(
        "{label:>24}: none {:.1} µs, ringfence {:.1} µs ({:.3}x), nftables {:.1} µs ({:.3}x); ringfence/nftables {:.3}; nft load {:.2} s{extra}",
        c.none, c.ringfence, c.ringfence / c.none, c.nftables, c.nftables / c.none, c.ringfence / c.nftables, c.nft_load.as_secs_f64()
    );
    println!("bench: {line}");
    line
}

/// For each size: the agent starts (every hook attached) and its apply time is taken from a
/// reload; then connect() latency is compared with every hook ("after": backstop, socket guards
/// and connect hooks) and, in the same run, with the connect hooks alone ("before", the added
/// hooks detached).
pub fn bench(args: BenchArgs) -> Result<()> {
    let geo = args.rounds.geo_dir()?;
    let rig = Rig::new("bench")?;
    let policy = rig.dir.join("bench-policy.yaml");
    let mut summary = Vec::new();
    for &size in &args.sizes {
        let cidrs = prefixes(&geo, size)?;
        std::fs::write(&policy, policy_yaml(&cidrs))?;
        // A fresh start attaches every hook (the previous size detached some).
        let agent = rig.agent(&policy, &[]);
        let t0 = Instant::now();
        agent.hup_and_wait(Duration::from_secs(120));
        let apply = t0.elapsed();
        let mut job =
            NftJob { prefixes: cidrs.iter().map(|c| (c.clone(), true)).collect(), otherwise_accept: false };
        job.prefixes.push(("198.51.100.0/24".into(), true));
        let label = format!("{} prefixes", cidrs.len() + 1);
        let after = rig.compare(&job, args.rounds.rounds, args.rounds.connects)?;
        summary.push(report(
            &format!("{label} (after)"),
            &after,
            &format!("; agent apply {:.2} s", apply.as_secs_f64()),
        ));
        summary.push(workloads::program_costs(&rig, rig.lab.cgroup(), args.rounds.connects)?);
        rig.detach_links(&rig::ADDED_HOOKS)?;
        let before = rig.compare(&job, args.rounds.rounds, args.rounds.connects)?;
        summary.push(report(&format!("{label} (before)"), &before, "; connect hooks only"));
        drop(agent);
    }
    args.rounds.print_summary(&summary);
    Ok(())
}
