//! `cargo xtask bench-path`: single-stream TCP throughput (iperf3) over the plain veth and with
//! the packet path (tcx accounting + policy) attached, rounds interleaved; and the programs'
//! cost per packet from the kernel's run-time statistics (enabled only while the benchmark holds
//! a BPF_ENABLE_STATS descriptor).
use std::{process::Stdio, time::Duration};

use anyhow::{bail, Context, Result};
use aya::{
    programs::loaded_programs,
    sys::{enable_stats, Stats},
};
use ringfence_common::{SKB_EGRESS, TC_EGRESS, TC_INGRESS};

use ringfence_tests::wg_lab;

use super::rig::{median, KillOnDrop, Rig, ADDED_HOOKS, DEST};

#[derive(clap::Args)]
pub struct PathBenchArgs {
    /// Interleaved rounds (each measures both conditions).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Seconds per iperf3 run.
    #[arg(long, default_value_t = 3)]
    seconds: u32,
}

const POLICY: &str = "apiVersion: ringfence.dev/v1\nkind: EgressPolicy\nmetadata: { name: bench-path }\nspec:\n  defaultAction: deny\n  egress:\n    - { name: iperf, action: allow, to: { cidrs: [198.51.100.0/24] } }\n";

/// iperf3 from the lab's node to the benchmark destination, in Gbit/s.
pub(super) fn iperf(rig: &Rig, seconds: u32) -> Result<f64> {
    let out = rig
        .lab
        .node_command("iperf3")
        .args(["-c", DEST, "-t", &seconds.to_string(), "-J"])
        .output()
        .context("run iperf3 client")?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("iperf3 JSON")?;
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .map(|b| b / 1e9)
        .with_context(|| format!("no throughput in iperf3 output: {}", String::from_utf8_lossy(&out.stdout)))
}

/// The baseline round: every pin and link detached (plain veth), then [`iperf`].
pub(super) fn plain_iperf(rig: &Rig, seconds: u32) -> Result<f64> {
    let out = rig.agent_cli(&["detach"]).context("run ringfence-agent detach")?;
    if !out.status.success() {
        bail!("detach: {}", String::from_utf8_lossy(&out.stderr));
    }
    iperf(rig, seconds)
}

/// Adds the run time and count between two [`program_stats`] readings to `acc`.
pub(super) fn add_cost(acc: &mut (Duration, u64), t0: (Duration, u64), t1: (Duration, u64)) {
    acc.0 += t1.0.saturating_sub(t0.0);
    acc.1 += t1.1.saturating_sub(t0.1);
}

/// (run time, run count) summed over the named programs (the kernel truncates names to 15
/// characters).
pub(super) fn program_stats(names: &[&str]) -> (Duration, u64) {
    loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| matches!(p.name_as_str(), Some(n) if names.iter().any(|w| w.starts_with(n))))
        .fold((Duration::ZERO, 0), |(t, c), p| (t + p.run_time(), c + p.run_count()))
}

/// The packet path's programs, and the cgroup backstop's (whose tail calls run inside it).
const PACKET_PATH: [&str; 2] = [TC_EGRESS, TC_INGRESS];
const BACKSTOP: [&str; 1] = [SKB_EGRESS];

/// iperf3 from node A to `addr` in node B (server already running there).
fn iperf_ns(a: &wg_lab::Node, addr: &str, seconds: u32) -> Result<f64> {
    let out = a.ns.command("iperf3").args(["-c", addr, "-t", &seconds.to_string(), "-J"]).output()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).context("iperf3 JSON")?;
    v["end"]["sum_received"]["bits_per_second"].as_f64().map(|b| b / 1e9).context("no throughput")
}

/// For reference: the same single stream between two agents' nodes, over the plain underlay
/// and through their userspace WireGuard (boringtun) tunnel.
fn wireguard_reference(rig: &Rig, seconds: u32) -> Result<(f64, f64)> {
    // The lab helpers start whichever agent and lab-probe RINGFENCE_AGENT_BIN and
    // RINGFENCE_LAB_PROBE name: the release builds.
    // SAFETY: single-threaded at this point; nothing else reads the environment concurrently.
    unsafe {
        std::env::set_var(ringfence_tests::agent::AGENT_ENV, rig.release.join("ringfence-agent"));
        std::env::set_var(ringfence_tests::probe::PROBE_ENV, rig.release.join("lab-probe"));
    }
    let (mut a, mut b) = wg_lab::mesh();
    let (key_a, key_b) = (a.pubkey(), b.pubkey());
    a.write_peers(&[(key_b.as_str(), "192.0.2.2:51820", "198.51.100.2/32")]);
    b.write_peers(&[(key_a.as_str(), "192.0.2.1:51820", "198.51.100.1/32")]);
    a.start_agent(wg_lab::TUNNEL_A);
    b.start_agent(wg_lab::TUNNEL_B);
    let server =
        b.ns.command("iperf3").arg("-s").stdout(Stdio::null()).spawn().context("iperf3 server in B")?;
    let _server = KillOnDrop(server);
    std::thread::sleep(Duration::from_millis(500));
    wg_lab::tcp_eventually(&a.ns, wg_lab::TUNNEL_B); // complete the WireGuard handshake
    let plain = iperf_ns(&a, wg_lab::UNDERLAY_B, seconds)?;
    let tunnel = iperf_ns(&a, wg_lab::TUNNEL_B, seconds)?;
    Ok((plain, tunnel))
}

pub fn bench_path(args: PathBenchArgs) -> Result<()> {
    let rig = Rig::new("benchpath")?;
    let server = rig.lab.world_ns().command("iperf3").args(["-s", "-B", DEST]).stdout(Stdio::null()).spawn();
    let _server = KillOnDrop(server.context("start iperf3 server (apt package iperf3)")?);
    std::thread::sleep(Duration::from_millis(500));
    let policy = rig.dir.join("path-policy.yaml");
    std::fs::write(&policy, POLICY)?;
    let iface = rig.lab.veth_names().0.to_string();
    let with_path = ["--interface".into(), iface.into()];
    let _stats = enable_stats(Stats::RunTime).context("BPF_ENABLE_STATS")?;
    // Three conditions, interleaved: plain veth (nothing attached), the packet path alone (the
    // hooks this round added detached: "before"), backstop + packet path ("after").
    let (mut plain, mut before, mut after) = (Vec::new(), Vec::new(), Vec::new());
    let (mut path_cost, mut backstop_cost) = ((Duration::ZERO, 0), (Duration::ZERO, 0));
    for round in 0..args.rounds {
        for k in 0..3 {
            match (round + k) % 3 {
                0 => plain.push(plain_iperf(&rig, args.seconds)?),
                1 => {
                    let _agent = rig.agent_in_node(&policy, &with_path);
                    rig.detach_links(&ADDED_HOOKS)?;
                    before.push(iperf(&rig, args.seconds)?);
                }
                _ => {
                    let _agent = rig.agent_in_node(&policy, &with_path);
                    let (p0, b0) = (program_stats(&PACKET_PATH), program_stats(&BACKSTOP));
                    after.push(iperf(&rig, args.seconds)?);
                    add_cost(&mut path_cost, p0, program_stats(&PACKET_PATH));
                    add_cost(&mut backstop_cost, b0, program_stats(&BACKSTOP));
                }
            }
        }
    }
    let (underlay, tunnel) = wireguard_reference(&rig, args.seconds)?;
    println!(
        "bench-path: for reference, userspace WireGuard (boringtun-cli 0.7.1) between two agents: underlay {underlay:.2} Gbit/s, tunnel {tunnel:.3} Gbit/s ({:.3}x)",
        tunnel / underlay
    );
    if path_cost.1 == 0 || backstop_cost.1 == 0 {
        bail!("the programs never ran: is the agent attached to {}?", rig.lab.veth_names().0);
    }
    let per_packet = |(t, c): (Duration, u64)| t.as_nanos() as f64 / c as f64;
    let (p, b, a) = (median(plain), median(before), median(after));
    println!(
        "bench-path: single-stream TCP, {} rounds x {} s: plain veth {p:.2} Gbit/s; packet path only (before) {b:.2} Gbit/s ({:.3}x); backstop + packet path (after) {a:.2} Gbit/s ({:.3}x); per packet: packet path {:.0} ns ({} runs), backstop {:.0} ns ({} runs) (GSO packets included)",
        args.rounds, args.seconds, b / p, a / p, per_packet(path_cost), path_cost.1, per_packet(backstop_cost), backstop_cost.1
    );
    Ok(())
}
