//! `cargo xtask bench-workloads`: per-workload policies at node scale. 1,000 workload cgroups
//! under the agent's `--cgroup-root`, labelled into 64 policies: connect() latency from a workload
//! against no program and against nftables doing the same per-cgroup job (a `socket cgroupv2`
//! verdict map jumping to one chain per policy), in interleaved rounds, three times: stateful
//! nftables (established connections pass first) with connection tracking running in every
//! condition, stateful nftables bringing the connection tracking it needs ([`Conntrack`]), and
//! stateless nftables deciding every packet as the backstop does; the time from a cgroup's
//! mkdir to its own policy in force (p50/p99); the agent's memory.
use std::{
    ffi::OsString,
    fmt::Write as _,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use ringfence_tests::{agent::AgentProc, cgroup::TestCgroup};

use super::rig::{median, Conditions, Conntrack, Rig, DEST};
use super::{report, Rounds};

#[derive(clap::Args)]
pub struct WorkloadBenchArgs {
    /// Workload cgroups under the root.
    #[arg(long, default_value_t = 1000)]
    workloads: usize,
    /// Workload policies (workload i gets policy i mod N).
    #[arg(long, default_value_t = 64)]
    policies: usize,
    /// cgroups created one by one to time "mkdir -> own policy in force".
    #[arg(long, default_value_t = 200)]
    creations: usize,
    #[command(flatten)]
    rounds: Rounds,
}

fn name(policy: usize, job: usize) -> String {
    format!("p{policy:02}-j{job:04}")
}

/// Policy `i`: its own /24-sized slice of prefixes (so the tries hold every policy's entries)
/// plus the benchmark destination.
fn policy_yaml(i: usize) -> String {
    let mut s = format!(
        "apiVersion: ringfence.dev/v1\nkind: EgressPolicy\nmetadata: {{ name: p{i:02} }}\nspec:\n  workloadSelector:\n    matchLabels: {{ bench/policy: p{i:02} }}\n  defaultAction: deny\n  egress:\n    - name: allow\n      action: allow\n      to:\n        cidrs:\n          - {DEST}/32\n"
    );
    for k in 0..100 {
        let _ = writeln!(s, "          - 10.{i}.{k}.0/24");
    }
    s
}

/// nftables' equivalent: the client's cgroup (level 2 under the cgroup2 root: the nft root, then
/// the workload) picks its policy's chain from a verdict map; each chain accepts the policy's
/// prefixes and drops the rest. `stateful`: packets of connections already tracked pass first
/// (`ct state established,related accept`, which needs connection tracking); otherwise every
/// packet is decided, as Ringfence's backstop does.
fn nft_script(root: &Path, workloads: usize, policies: usize, stateful: bool) -> String {
    // nft resolves the path under /sys/fs/cgroup (on a hybrid host the v2 tree is its `unified/`).
    let rel = |p: &Path| p.strip_prefix("/sys/fs/cgroup").unwrap_or(p).display().to_string();
    let mut s = String::from(
        "table inet rf_bench {\n chain out { type filter hook output priority 0; policy accept; }\n",
    );
    for i in 0..policies {
        let _ = write!(s, " chain p{i:02} {{ ip daddr {{ {DEST}/32");
        for k in 0..100 {
            let _ = write!(s, ", 10.{i}.{k}.0/24");
        }
        let _ = writeln!(s, " }} accept; drop; }}");
    }
    s.push_str(" map cg { type cgroupsv2 : verdict; elements = { ");
    let items: Vec<String> = (0..workloads)
        .map(|j| format!("\"{}\" : jump p{:02}", rel(&root.join(name(j % policies, j))), j % policies))
        .collect();
    s.push_str(&items.join(", "));
    s.push_str(" } }\n chain check { oifname \"lo\" accept; ");
    if stateful {
        s.push_str("ct state established,related accept; ");
    }
    s.push_str("socket cgroupv2 level 2 vmap @cg; }\n}\n");
    s
}

fn rss_kib(pid: i32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| {
            l.strip_prefix("VmRSS:").and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        })
        .context("VmRSS")
}

/// Each cgroup program's average run time over `connects` connects from `cg` (the kernel's BPF
/// run-time statistics, on only while this runs).
pub(super) fn program_costs(rig: &Rig, cg: &TestCgroup, connects: usize) -> Result<String> {
    use aya::sys::{enable_stats, Stats};
    let programs = ["rf_connect4", "rf_skb_egress", "rf_skb_ingress", "rf_sock_create"];
    let _stats = enable_stats(Stats::RunTime).context("BPF_ENABLE_STATS")?;
    let before: Vec<_> = programs.iter().map(|p| super::path::program_stats(&[p])).collect();
    rig.measure(cg, connects)?;
    let mut line = format!("BPF run time per call over {connects} connects:");
    for (p, (t0, n0)) in programs.iter().zip(before) {
        let (t1, n1) = super::path::program_stats(&[p]);
        let calls = n1.saturating_sub(n0);
        if calls > 0 {
            let _ =
                write!(line, " {p} {:.0} ns ({} calls)", (t1 - t0).as_nanos() as f64 / calls as f64, calls);
        }
    }
    println!("bench: {line}");
    Ok(line)
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1]
}

pub fn bench_workloads(args: WorkloadBenchArgs) -> Result<()> {
    let rig = Rig::new("wlbench")?;
    let root = rig.lab.cgroup();
    let jobs: Vec<TestCgroup> =
        (0..args.workloads).map(|j| root.child(&name(j % args.policies, j))).collect();
    let nft_root = TestCgroup::new();
    let twins: Vec<TestCgroup> =
        (0..args.workloads).map(|j| nft_root.child(&name(j % args.policies, j))).collect();
    let mut labels = String::new();
    for i in 0..args.policies {
        let _ = writeln!(labels, "- pattern: \"p{i:02}-*\"\n  labels: {{ bench/policy: p{i:02} }}");
    }
    let write = |file: &str, text: &str| -> Result<std::path::PathBuf> {
        let p = rig.dir.join(file);
        std::fs::write(&p, text)?;
        Ok(p)
    };
    let labels = write("labels.yaml", &labels)?;
    let identity = write(
        "identity.yaml",
        &format!(
            "apiVersion: ringfence.dev/v1\nkind: IdentitySources\nsources:\n  static:\n    file: {}\n",
            labels.display()
        ),
    )?;
    let default = write(
        "default.yaml",
        "apiVersion: ringfence.dev/v1\nkind: EgressPolicy\nmetadata: { name: node-default }\nspec:\n  defaultAction: deny\n  egress: []\n",
    )?;
    let state = rig.dir.join("state");
    std::fs::create_dir_all(&state)?;
    let mut run: Vec<OsString> = vec![
        "run".into(),
        "--policy".into(),
        default.into(),
        "--cgroup-root".into(),
        root.path().into(),
        "--identity".into(),
        identity.into(),
        "--bpffs".into(),
        rig.bpffs().into(),
        "--state-dir".into(),
        state.into(),
        "--allow-weaker-isolation".into(),
    ];
    for i in 0..args.policies {
        run.extend(["--workload-policy".into(), write(&format!("p{i:02}.yaml"), &policy_yaml(i))?.into()]);
    }
    let t = Instant::now();
    let agent = AgentProc::spawn_args(&rig.release.join("ringfence-agent"), &run, false);
    agent.wait_for_message("enforcing", Duration::from_secs(300));
    let start = t.elapsed();
    let rss = rss_kib(agent.pid())?;

    // The measured workload is the last one (the nftables map has no order; the trie no favourite).
    let last = args.workloads - 1;
    let script = |stateful| nft_script(nft_root.path(), args.workloads, args.policies, stateful);
    let variants = [
        ("stateful nftables, conntrack on in every condition", script(true), Conntrack::Everywhere),
        ("stateful nftables bringing its own conntrack", script(true), Conntrack::NftOnly),
        ("stateless nftables (every packet decided, no conntrack)", script(false), Conntrack::NftOnly),
    ];
    let mut summary = Vec::new();
    for (label, script, conntrack) in &variants {
        let set =
            Conditions { ours: &jobs[last], theirs: &twins[last], nft_script: script, conntrack: *conntrack };
        let c = rig.compare_in(&set, args.rounds.rounds, args.rounds.connects)?;
        summary.push(report(
            &format!("{} workloads, {} policies, {label}", args.workloads, args.policies),
            &c,
            &format!("; agent start {:.2} s, RSS {} MiB", start.as_secs_f64(), rss / 1024),
        ));
    }

    summary.push(program_costs(&rig, &jobs[last], args.rounds.connects)?);

    // mkdir -> the agent has written the new cgroup's entry (it logs after the kernel write).
    let mut delays = Vec::new();
    for n in 0..args.creations {
        let path = name(n % args.policies, 10_000 + n);
        // Counted, not searched: the log holds every verdict of the latency rounds.
        let found = agent.count("workload found");
        let t = Instant::now();
        let cg = root.child(&path);
        agent.wait_for_count("workload found", found + 1, Duration::from_secs(10));
        delays.push(t.elapsed().as_secs_f64() * 1000.0);
        drop(cg);
    }
    let line = format!(
        "mkdir -> own policy in force over {} cgroups: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        delays.len(),
        median(delays.clone()),
        percentile(delays.clone(), 0.99),
        percentile(delays, 1.0)
    );
    println!("bench: {line}");
    summary.push(line);
    summary.push(format!(
        "agent RSS with {} policies and {} workloads: {} KiB",
        args.policies, args.workloads, rss
    ));
    args.rounds.print_summary(&summary);
    drop(agent);
    drop(twins);
    drop(jobs);
    Ok(())
}
