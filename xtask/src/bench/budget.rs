//! `cargo xtask bench-budget`: what the exfiltration budgets cost and how exactly they stop.
//! Single-stream TCP (iperf3) to an approved sink over the plain veth and with the agent
//! enforcing budgets and a rate cap (rounds interleaved: the ratio is measured in one run); the
//! backstop's cost per packet without budgets ("before": one array read decides that the budget
//! program is not called) and with them ("after": its tail call to the budget program and the
//! approved-sink lookup there); and the bytes past a
//! budget at the fastest rate the lab reaches (an unpaced upload to a destination that is not
//! approved, counted at the receiver).
use std::{process::Stdio, time::Duration};

use anyhow::{bail, Context, Result};
use aya::sys::{enable_stats, Stats};
use ringfence_common::{SKB_EGRESS, SKB_INGRESS};
use ringfence_tests::Sink;

use super::{
    path::{add_cost, iperf, plain_iperf, program_stats},
    rig::{median, KillOnDrop, Rig, DEST},
};

#[derive(clap::Args)]
pub struct BudgetBenchArgs {
    /// Interleaved rounds (each measures every condition).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds per iperf3 run.
    #[arg(long, default_value_t = 3)]
    seconds: u32,
}

const HEAD: &str = "apiVersion: ringfence.dev/v1\nkind: EgressPolicy\nmetadata: { name: bench-budget }\nspec:\n  defaultAction: allow\n";
const BUDGETS: &str = "  exfiltration:\n    approvedSinks: { cidrs: [198.51.100.10/32] }\n    budgets: { perDestination: 64MiB/1h, total: 10GiB/1h }\n";
/// Added for the throughput rounds (the unpaced upload runs without it: the cap, not the
/// budget, would stop it).
const RATE_CAP: &str = "    rateLimit: 10MB/s\n";
/// The per-destination budget above, and where the unpaced upload goes (not approved).
const BUDGET: u64 = 64 << 20;
const ELSEWHERE: &str = "203.0.113.5";
const SINK_PORT: u16 = 9000;
/// The programs a workload's TCP upload runs through with the agent's cgroup hooks (the
/// backstop's tail calls, the budget program among them, count in its run time), and which of
/// them is the backstop.
const ON_PATH: [&str; 2] = [SKB_EGRESS, SKB_INGRESS];
const BACKSTOP: usize = 0;

pub fn bench_budget(args: BudgetBenchArgs) -> Result<()> {
    let rig = Rig::new("benchbudget")?;
    let server = rig.lab.world_ns().command("iperf3").args(["-s", "-B", DEST]).stdout(Stdio::null()).spawn();
    let _server = KillOnDrop(server.context("start iperf3 server (apt package iperf3)")?);
    std::thread::sleep(Duration::from_millis(500));
    let (without, with) = (rig.dir.join("no-budgets.yaml"), rig.dir.join("budgets.yaml"));
    let budgets_only = rig.dir.join("budgets-only.yaml");
    std::fs::write(&without, HEAD)?;
    std::fs::write(&with, format!("{HEAD}{BUDGETS}{RATE_CAP}"))?;
    std::fs::write(&budgets_only, format!("{HEAD}{BUDGETS}"))?;
    let _stats = enable_stats(Stats::RunTime).context("BPF_ENABLE_STATS")?;
    let (mut plain, mut budgets) = (Vec::new(), Vec::new());
    let mut before = [(Duration::ZERO, 0); ON_PATH.len()];
    let mut after = before;
    let stats = || ON_PATH.map(|name| program_stats(&[name]));
    let add = |acc: &mut [(Duration, u64); ON_PATH.len()], t0: [(Duration, u64); ON_PATH.len()]| {
        for ((a, t0), t1) in acc.iter_mut().zip(t0).zip(stats()) {
            add_cost(a, t0, t1);
        }
    };
    for round in 0..args.rounds {
        for k in 0..3 {
            match (round + k) % 3 {
                0 => plain.push(plain_iperf(&rig, args.seconds)?),
                1 => {
                    let _agent = rig.agent(&without, &[]);
                    let t0 = stats();
                    iperf(&rig, args.seconds)?;
                    add(&mut before, t0);
                }
                _ => {
                    let _agent = rig.agent(&with, &[]);
                    let t0 = stats();
                    budgets.push(iperf(&rig, args.seconds)?);
                    add(&mut after, t0);
                }
            }
        }
    }
    if before[BACKSTOP].1 == 0 || after[BACKSTOP].1 == 0 {
        bail!("the backstop never ran");
    }
    let per_packet = |(t, c): (Duration, u64)| t.as_nanos() as f64 / c.max(1) as f64;
    let (p, b) = (median(plain), median(budgets));
    println!(
        "bench-budget: single-stream TCP to an approved sink, {} rounds x {} s: plain veth {p:.2} Gbit/s; budgets + rate cap loaded {b:.2} Gbit/s ({:.3}x)",
        args.rounds, args.seconds, b / p
    );
    // Each condition ran `rounds` iperf3 runs of `seconds`.
    let transfer_s = (args.rounds as u32 * args.seconds) as f64;
    for (i, name) in ON_PATH.iter().enumerate() {
        println!(
            "bench-budget: {name} per run: before (no budgets) {:.0} ns, {:.0} runs/s; after (budgets + rate cap) {:.0} ns, {:.0} runs/s; {:.2}% of one CPU during the transfer after",
            per_packet(before[i]),
            before[i].1 as f64 / transfer_s,
            per_packet(after[i]),
            after[i].1 as f64 / transfer_s,
            after[i].0.as_secs_f64() / transfer_s * 100.0
        );
    }
    let past = past_budget(&rig, &budgets_only)?;
    println!("bench-budget: unpaced upload to a non-approved destination, budget {BUDGET} B: {past} B past the budget at the receiver (negative: stopped short of it)");
    Ok(())
}

/// Bytes the receiver got past [`BUDGET`] from an unpaced upload (a fresh agent: fresh counters).
fn past_budget(rig: &Rig, policy: &std::path::Path) -> Result<i64> {
    let out = rig.agent_cli(&["detach"]).context("run ringfence-agent detach")?;
    if !out.status.success() {
        bail!("detach: {}", String::from_utf8_lossy(&out.stderr));
    }
    let _agent = rig.agent(policy, &[]);
    let sink = Sink::start(&rig.lab, SINK_PORT, None);
    let r = rig.lab.upload(ELSEWHERE, SINK_PORT, 4 * BUDGET, None);
    if r["stalled"] != true {
        bail!("the upload was not stopped: {r}");
    }
    let received = sink.settled(Duration::from_millis(300), Duration::from_secs(20)).tcp;
    Ok(received as i64 - BUDGET as i64)
}
