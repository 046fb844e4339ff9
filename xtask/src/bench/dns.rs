//! `cargo xtask bench-dns`: what learning domain names costs, in one run (a netns lab, the real
//! agent, dnsmasq in the world namespace), alternating two policies round by round:
//!
//! - *on*: `to.fqdns` with pinned resolvers (every answer is parsed in `cgroup_skb/ingress`,
//!   port 53/853/443 verdicts check the resolver map, connects to the answered address are
//!   decided by the learned set);
//! - *off*: the same destinations as CIDR rules (the resolver and the address allowed by CIDR;
//!   no parsing).
//!
//! Per round: DNS lookup latency (p50/p99 of `lab-probe resolve --count`, UDP, answers of 4
//! addresses), then the median connect() latency to an answered address (learned in *on*, CIDR
//! in *off*). Then the learned map's memory (its kernel memlock; it is preallocated) per 100,000
//! addresses.
use std::os::fd::{AsFd, AsRawFd};
use std::process::Stdio;

use anyhow::{bail, Context, Result};
use ringfence_common::{LEARNED_MAP, MAX_LEARNED};
use ringfence_tests::{dnsmasq_bin, policy_head_with, DnsServer, Enforced};

use super::rig::median;

const RESOLVER: &str = "198.51.100.53";
const ADDRS: [&str; 4] = ["203.0.113.10", "203.0.113.11", "203.0.113.12", "203.0.113.13"];

/// `cargo xtask bench-dns` options.
#[derive(clap::Args, Debug)]
pub struct DnsBenchArgs {
    /// Rounds per policy (interleaved).
    #[arg(long, default_value_t = 6)]
    rounds: usize,
    /// Lookups per round.
    #[arg(long, default_value_t = 2000)]
    lookups: usize,
    /// connect() calls per round.
    #[arg(long, default_value_t = 2000)]
    connects: usize,
}

fn policy(on: bool) -> String {
    let rule = |to: &str, port: u16, proto: &str| {
        format!("    - name: r{port}\n      action: allow\n      to: {{ {to} }}\n      ports: [ {{ port: {port}, protocol: {proto} }} ]\n")
    };
    if on {
        let dns = format!("  dns:\n    resolvers: [{RESOLVER}]\n");
        policy_head_with("dnsbench", "enforce", "deny", &dns) + &rule("fqdns: [s3.example]", 443, "tcp")
    } else {
        policy_head_with("dnsbench", "enforce", "deny", "")
            + &rule(&format!("cidrs: [{RESOLVER}]"), 53, "udp")
            + &rule(&format!("cidrs: [{}]", ADDRS.join(", ")), 443, "tcp")
    }
}

/// (p50 µs, p99 µs) of one round of lookups.
fn lookups(e: &Enforced, n: usize) -> Result<(f64, f64)> {
    let out = e
        .lab
        .node_command(e.lab.probe_path())
        .args(["resolve", RESOLVER, "s3.example", "--count", &n.to_string(), "--expect-answers"])
        .stdin(Stdio::null())
        .output()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("lab-probe resolve output")?;
    if v["failed"].as_u64() != Some(0) || v["lookups"].as_u64() != Some(n as u64) {
        bail!("lookups failed: {v}");
    }
    Ok((v["p50_us"].as_f64().unwrap_or(0.0), v["p99_us"].as_f64().unwrap_or(0.0)))
}

/// Median connect() latency (µs) to `addr`:443 from the lab's cgroup.
fn connects(e: &Enforced, addr: &str, n: usize) -> Result<f64> {
    let exe = std::env::current_exe()?;
    let out = e.lab.node_command(exe).args(["bench-client", addr, "443", &n.to_string()]).output()?;
    if !out.status.success() {
        bail!("bench-client {addr}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse::<f64>()? / 1000.0)
}

/// The kernel memory (memlock) of the pinned learned map, in bytes.
fn learned_memlock(e: &Enforced) -> Result<u64> {
    let data = aya::maps::MapData::from_pin(e.bpffs().join("maps").join(LEARNED_MAP))?;
    let fd = data.fd().as_fd().as_raw_fd();
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}"))?;
    info.lines()
        .find_map(|l| l.strip_prefix("memlock:").map(|v| v.trim().parse::<u64>()))
        .context("memlock in fdinfo")?
        .map_err(Into::into)
}

pub fn bench_dns(args: DnsBenchArgs) -> Result<()> {
    if dnsmasq_bin().is_none() {
        bail!("dnsmasq is not installed: run cargo xtask setup");
    }
    let mut hosts = vec![RESOLVER];
    hosts.extend(ADDRS);
    let mut e = Enforced::prepare_with_hosts("dnsbench", &hosts, &[443], &policy(true));
    let records: Vec<(&str, &str)> = ADDRS.iter().map(|a| ("s3.example", *a)).collect();
    let _dns = DnsServer::start(e.lab.world_ns(), RESOLVER, &records, 60, &[]);
    e.start_agent();
    let (mut p50, mut p99, mut conn) = ([vec![], vec![]], [vec![], vec![]], [vec![], vec![]]);
    for round in 0..args.rounds * 2 {
        let on = round % 2 == 0;
        if round > 0 {
            e.replace_policy(&policy(on));
        }
        let (a, b) = lookups(&e, args.lookups)?;
        let c = connects(&e, ADDRS[0], args.connects)?;
        let i = usize::from(on);
        println!("round {round:>2} learning {:<3}: lookup p50 {a:>6.0} µs p99 {b:>6.0} µs; connect median {c:>6.1} µs", if on { "on" } else { "off" });
        p50[i].push(a);
        p99[i].push(b);
        conn[i].push(c);
    }
    let m = |v: &Vec<f64>| median(v.clone());
    let memlock = learned_memlock(&e)?;
    println!(
        "\nsummary (median over {} rounds per policy; {} lookups, {} connects per round):",
        args.rounds, args.lookups, args.connects
    );
    println!(
        "  DNS lookup p50: off {:.0} µs, on {:.0} µs (added {:+.0} µs)",
        m(&p50[0]),
        m(&p50[1]),
        m(&p50[1]) - m(&p50[0])
    );
    println!(
        "  DNS lookup p99: off {:.0} µs, on {:.0} µs (added {:+.0} µs; target <= 1000 µs)",
        m(&p99[0]),
        m(&p99[1]),
        m(&p99[1]) - m(&p99[0])
    );
    println!(
        "  connect() to a learned address vs a CIDR rule: {:.1} µs vs {:.1} µs, ratio {:.3} (target <= 1.10)",
        m(&conn[1]),
        m(&conn[0]),
        m(&conn[1]) / m(&conn[0])
    );
    println!(
        "  learned map: {} bytes memlock for {MAX_LEARNED} addresses (preallocated LRU), {:.1} MiB per 100,000 addresses",
        memlock,
        memlock as f64 * 100_000.0 / MAX_LEARNED as f64 / (1024.0 * 1024.0)
    );
    Ok(())
}
