//! `cargo xtask demo`: a live demonstration in network namespaces. A "node" namespace with a
//! workload cgroup, a "world" namespace with hosts on documentation addresses, the real agent
//! enforcing a policy: allowed and denied connections, their live events, a hot reload, an
//! exfiltration caught and blocked, the enforcement surviving the agent, and detach. Everything is
//! removed at the end.
use std::{path::Path, thread::sleep, time::Duration};

use anyhow::{bail, Result};
use ringfence_policy::geo::fixture::{write_mmdb, Layout};
use ringfence_tests::{agent::AgentProc, Lab, ProbeResult};

use crate::util::{cargo, is_root, run, workspace_root};

const POLICY: &str = include_str!("demo-policy.yaml");

struct Step {
    what: &'static str,
    proto: &'static str,
    addr: &'static str,
    port: u16,
    expect_ok: bool,
}

const STEPS: &[Step] = &[
    Step {
        what: "checkpoint store (rule checkpoint-store)",
        proto: "tcp",
        addr: "198.51.100.10",
        port: 443,
        expect_ok: true,
    },
    Step {
        what: "checkpoint store, wrong port (default deny)",
        proto: "tcp",
        addr: "198.51.100.10",
        port: 9000,
        expect_ok: false,
    },
    Step {
        what: "unknown host (default deny)",
        proto: "tcp",
        addr: "203.0.113.5",
        port: 443,
        expect_ok: false,
    },
    Step {
        what: "DNS resolver over UDP (rule dns)",
        proto: "udp",
        addr: "198.51.100.20",
        port: 53,
        expect_ok: true,
    },
    Step {
        what: "DNS to an unknown resolver (default deny)",
        proto: "udp",
        addr: "203.0.113.5",
        port: 53,
        expect_ok: false,
    },
    Step {
        what: "IPv6 checkpoint store (rule checkpoint-store)",
        proto: "tcp",
        addr: "2001:db8:10::10",
        port: 443,
        expect_ok: true,
    },
    Step {
        what: "IPv6 legacy mirror (rule no-legacy-mirror)",
        proto: "tcp",
        addr: "2001:db8:20::10",
        port: 443,
        expect_ok: false,
    },
    Step {
        what: "partner service in DE (rule eu-partners)",
        proto: "tcp",
        addr: "198.51.100.20",
        port: 8080,
        expect_ok: true,
    },
    Step {
        what: "same service in CN (default deny)",
        proto: "tcp",
        addr: "203.0.113.5",
        port: 8080,
        expect_ok: false,
    },
];

/// The demo's geo-IP database: documentation ranges placed in countries.
const GEO: [(&str, &str); 4] = [
    ("198.51.100.0/24", "DE"),
    ("2001:db8:10::/48", "DE"),
    ("203.0.113.0/24", "CN"),
    ("2001:db8:20::/48", "CN"),
];

fn write_geo_db(path: &Path) -> Result<()> {
    let nets: Vec<(ipnet::IpNet, &str)> =
        GEO.iter().map(|(n, c)| (n.parse().expect("network"), *c)).collect();
    write_mmdb(path, &nets, Layout::GeoIp2Country, 6)?;
    Ok(())
}

fn probe(lab: &Lab, proto: &str, addr: &str, port: u16) -> ProbeResult {
    match proto {
        "tcp" => lab.tcp(addr, port),
        _ => lab.udp(addr, port),
    }
}

fn show(lab: &Lab, step: &Step) -> bool {
    let r = probe(lab, step.proto, step.addr, step.port);
    let got = if r.ok {
        "connected".to_string()
    } else {
        format!("refused: {}", r.error.clone().unwrap_or_default())
    };
    let good = r.ok == step.expect_ok;
    println!(
        "  {} {:>3} {:<18} {:>5}  {:<46} -> {got}",
        if good { "✔" } else { "✘" },
        step.proto,
        step.addr,
        step.port,
        step.what
    );
    // Let the agent print the event before the next line.
    sleep(Duration::from_millis(150));
    good
}

fn agent_status(agent_bin: &Path, bpffs: &Path) -> Result<()> {
    run(std::process::Command::new(agent_bin).args(["status", "--bpffs"]).arg(bpffs))
}

pub fn demo() -> Result<()> {
    crate::setup::setup(false)?;
    if !is_root() {
        bail!("the demo creates network namespaces, a cgroup and BPF programs: run it as root");
    }
    run(cargo().args(["build", "--quiet", "-p", "ringfence-agent", "-p", "ringfence-tests", "--bins"]))?;
    let target = workspace_root().join("target/debug");
    let agent_bin = target.join("ringfence-agent");

    println!("\n== Lab: node namespace (192.0.2.1, 2001:db8:1::1) -> world namespace with hosts 198.51.100.10, 198.51.100.20, 203.0.113.5, 2001:db8:10::10, 2001:db8:20::10");
    let mut lab = Lab::with_probe("demo", target.join("lab-probe"));
    lab.start_world_servers(&[53, 443, 8080]);
    let dir = tempdir()?;
    let policy = dir.join("policy.yaml");
    std::fs::write(&policy, POLICY)?;
    let geo_db = dir.join("country.mmdb");
    write_geo_db(&geo_db)?;
    println!(
        "== Geo-IP database ({}): {}",
        geo_db.display(),
        GEO.iter().map(|(n, c)| format!("{n} -> {c}")).collect::<Vec<_>>().join(", ")
    );
    println!(
        "== Policy ({}):\n{}",
        policy.display(),
        POLICY
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    let uplink = lab.veth_names().0.to_string();
    println!(
        "\n== Starting ringfence-agent on cgroup {} with the packet path on the node's uplink {uplink}",
        lab.cgroup_path().display()
    );
    let args: Vec<std::ffi::OsString> = vec![
        "run".into(),
        "--policy".into(),
        policy.clone().into(),
        "--cgroup".into(),
        lab.cgroup_path().into(),
        "--bpffs".into(),
        lab.bpffs_path().into(),
        "--geoip-db".into(),
        geo_db.clone().into(),
        "--interface".into(),
        uplink.into(),
        "--state-dir".into(),
        dir.join("state").into(),
        "--watch-interval".into(),
        "0.2".into(),
    ];
    let mut agent = AgentProc::spawn_command(lab.node_ns().command(&agent_bin), &args, true);
    // Verifying the programs takes a few seconds (more on a busy machine).
    agent.wait_for_message("enforcing", Duration::from_secs(90));

    println!("\n== Connections from a workload in the cgroup (each verdict arrives as a live event)");
    let mut all_good = STEPS.iter().map(|s| show(&lab, s)).fold(true, |a, b| a & b);

    println!(
        "\n== Hot reload: allow 203.0.113.5:443 (policy file edited; the agent notices and swaps atomically)"
    );
    let widened = POLICY.replace("198.51.100.10/32, \"2001", "198.51.100.10/32, 203.0.113.5/32, \"2001");
    std::fs::write(&policy, widened)?;
    agent.wait_for_message("policy applied", Duration::from_secs(10));
    all_good &= show(
        &lab,
        &Step {
            what: "unknown host, now allowed (rule checkpoint-store)",
            proto: "tcp",
            addr: "203.0.113.5",
            port: 443,
            expect_ok: true,
        },
    );

    all_good &= escapes(&lab, &agent, &target)?;
    all_good &= exfiltration(&lab, &agent, &agent_bin, &target)?;

    println!("\n== Agent status");
    agent_status(&agent_bin, lab.bpffs_path())?;

    println!("\n== Agent killed with SIGKILL: enforcement stays pinned in the kernel");
    agent.kill9();
    all_good &= show(&lab, &STEPS[1]);
    all_good &= show(&lab, &STEPS[0]);

    println!("\n== `ringfence-agent detach`: programs and maps removed, everything is allowed again");
    run(std::process::Command::new(&agent_bin).args(["detach", "--bpffs"]).arg(lab.bpffs_path()))?;
    all_good &= show(
        &lab,
        &Step {
            what: "unknown host, no policy any more",
            proto: "tcp",
            addr: "203.0.113.5",
            port: 8080,
            expect_ok: true,
        },
    );

    println!("\n== Cleaning up the lab");
    drop(lab);
    std::fs::remove_dir_all(&dir)?;
    if !all_good {
        bail!("some connections did not get the expected verdict");
    }
    println!("demo: every connection got the expected verdict");
    Ok(())
}

/// Attempts that get past connect()-time checks on other firewalls: a raw socket (refused at
/// creation) and an IPv4 source route that sends DNS for the allowed resolver through the denied
/// host first (the packet is dropped by the cgroup's backstop, which reports it).
fn escapes(lab: &Lab, agent: &AgentProc, target: &Path) -> Result<bool> {
    println!("\n== No way out: attempts that get past connect()-time checks");
    let escape = |args: &[&str]| -> Result<serde_json::Value> {
        let out = lab.node_command(target.join("lab-probe")).arg("escape").args(args).output()?;
        Ok(serde_json::from_slice(&out.stdout).unwrap_or_default())
    };
    let raw = escape(&["raw-udp", "203.0.113.5", "53", "--marker", "demo-raw"])?;
    let refused = raw["socket"] == "EPERM";
    println!(
        "  {} raw UDP socket to 203.0.113.5 -> socket(): {} (rawSockets: deny)",
        if refused { "✔" } else { "✘" },
        raw["socket"].as_str().unwrap_or("?")
    );
    escape(&["srr-opt", "198.51.100.20", "53", "--marker", "demo-srr", "--via", "203.0.113.5"])?;
    let drop = agent.wait_for_event("the backstop's drop", Duration::from_secs(5), |v| {
        v["hook"] == "rf_skb_egress" && v["dst"] == "203.0.113.5"
    });
    println!(
        "  ✔ DNS to 198.51.100.20 (allowed) source-routed through 203.0.113.5 (IP_OPTIONS LSRR) -> dropped by the cgroup backstop (rule {})",
        drop["rule"].as_str().unwrap_or("?")
    );
    Ok(refused)
}

/// A workload streams 300 MB to a host that is allowed but not an approved sink: the agent
/// alerts past 100 MB and blocks the destination for the cgroup; `release` lifts the block.
fn exfiltration(lab: &Lab, agent: &AgentProc, agent_bin: &Path, target: &Path) -> Result<bool> {
    println!(
        "\n== Exfiltration guard: a workload streams 300 MB to 203.0.113.5:443 (allowed, but not an approved sink; threshold 100 MB, action block)"
    );
    let out = lab
        .node_command(target.join("lab-probe"))
        .args(["stream", "203.0.113.5", "443", "--bytes", "300000000", "--rate", "100000000"])
        .args(["--stall-ms", "2000"])
        .output()?;
    let last = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().to_string();
    let v: serde_json::Value = serde_json::from_str(&last).unwrap_or_default();
    let stalled = out.status.code() == Some(3);
    let alert = agent.wait_for_message("exfiltration alert", Duration::from_secs(5));
    println!(
        "  {} transfer stopped after {} bytes; alert: {}",
        if stalled { "✔" } else { "✘" },
        v["sent"],
        alert["explanation"].as_str().unwrap_or("?")
    );
    let mut good = stalled;
    good &= show(
        lab,
        &Step {
            what: "the same destination again (exfiltration block)",
            proto: "tcp",
            addr: "203.0.113.5",
            port: 443,
            expect_ok: false,
        },
    );
    run(std::process::Command::new(agent_bin).args(["blocks", "--bpffs"]).arg(lab.bpffs_path()))?;
    println!("\n== `ringfence-agent release --destination 203.0.113.5`: the operator lifts the block");
    run(std::process::Command::new(agent_bin)
        .args(["release", "--destination", "203.0.113.5", "--bpffs"])
        .arg(lab.bpffs_path()))?;
    agent.wait_for_message("exfiltration block released", Duration::from_secs(5));
    good &=
        show(lab, &Step { what: "released", proto: "tcp", addr: "203.0.113.5", port: 443, expect_ok: true });
    Ok(good)
}

/// A private temporary directory (removed by the caller).
pub fn tempdir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("ringfence-xtask-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
