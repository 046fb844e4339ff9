//! `cargo xtask bench-geo`: country policies on the full-size iptoasn database (400k networks):
//! compile + swap time, geo entries after aggregation, agent memory, and connect() latency against
//! no program and against nftables with the same prefixes (an interval verdict map).
use std::{
    net::IpAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use ringfence_common::{ACTION_ALLOW, PROTO_TCP};
use ringfence_policy::{compile, geo::GeoDb, parse_policy, Compiled};

use super::{
    report,
    rig::{NftJob, Rig, PORT},
    Rounds,
};

#[derive(clap::Args)]
pub struct GeoBenchArgs {
    #[command(flatten)]
    rounds: Rounds,
}

const POLICIES: [(&str, &str); 2] = [
    (
        "allow only DE",
        "apiVersion: ringfence.dev/v1\nkind: EgressPolicy\nmetadata: { name: only-de }\nspec:\n  defaultAction: deny\n  unknownCountry: allow\n  egress:\n    - { name: de, action: allow, to: { countries: [DE] } }\n",
    ),
    (
        "deny CN, RU, IR, KP",
        "apiVersion: ringfence.dev/v1\nkind: EgressPolicy\nmetadata: { name: no-cn-ru-ir-kp }\nspec:\n  defaultAction: allow\n  egress:\n    - { name: sanctioned, action: deny, to: { countries: [CN, RU, IR, KP] } }\n",
    ),
];

/// nftables doing what the compiled geo tables do: each entry's verdict, the rest unknown.
fn nft_job(compiled: &Compiled) -> NftJob {
    let verdict = |addr: IpAddr| compiled.evaluate(addr, PORT, PROTO_TCP).0 == ACTION_ALLOW;
    let mut prefixes = Vec::with_capacity(compiled.geo4.len() + compiled.geo6.len());
    for (a, len, _) in &compiled.geo4 {
        let addr = IpAddr::from(*a);
        prefixes.push((format!("{addr}/{len}"), verdict(addr)));
    }
    for (a, len, _) in &compiled.geo6 {
        let addr = IpAddr::from(*a);
        prefixes.push((format!("{addr}/{len}"), verdict(addr)));
    }
    // The benchmark destination is a documentation address: unknown to the database.
    let otherwise_accept = verdict(super::rig::DEST.parse().expect("address"));
    NftJob { prefixes, otherwise_accept }
}

/// (current, peak) resident memory of a process in MiB.
fn rss_mib(pid: i32) -> Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("agent status")?;
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Ok((kib("VmRSS:") / 1024.0, kib("VmHWM:") / 1024.0))
}

pub fn bench_geo(args: GeoBenchArgs) -> Result<()> {
    let dir = args.rounds.geo_dir()?.join("iptoasn-country");
    let dbs: Vec<PathBuf> =
        ["iptoasn-country-ipv4.mmdb", "iptoasn-country-ipv6.mmdb"].iter().map(|f| dir.join(f)).collect();
    let db = GeoDb::open(&dbs, None).context("opening the iptoasn databases")?;
    let rig = Rig::new("benchgeo")?;
    let policy = rig.dir.join("geo-policy.yaml");
    std::fs::write(&policy, POLICIES[0].1)?;
    let extra: Vec<std::ffi::OsString> =
        dbs.iter().flat_map(|d| ["--geoip-db".into(), d.clone().into_os_string()]).collect();
    let t = Instant::now();
    let agent = rig.agent(&policy, &extra);
    println!(
        "bench-geo: agent start (database load, compile, verifier, attach): {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let mut summary = Vec::new();
    for (label, yaml) in POLICIES {
        let parsed = parse_policy(yaml).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let t = Instant::now();
        let compiled = compile(&parsed, Some(&db))?;
        let compile_only = t.elapsed();
        std::fs::write(&policy, yaml)?;
        let t = Instant::now();
        agent.hup_and_wait(Duration::from_secs(120));
        let swap = t.elapsed();
        let (rss, peak) = rss_mib(agent.pid())?;
        let c = rig.compare(&nft_job(&compiled), args.rounds.rounds, args.rounds.connects)?;
        let extra = format!(
            "; {} + {} geo entries (from {} networks); compile {:.3} s; agent reload (parse+compile+swap) {:.2} s; agent RSS {rss:.1} MiB (peak {peak:.1})",
            compiled.geo4.len(), compiled.geo6.len(), db.info().networks_v4 + db.info().networks_v6,
            compile_only.as_secs_f64(), swap.as_secs_f64()
        );
        summary.push(report(label, &c, &extra));
    }
    drop(agent);
    args.rounds.print_summary(&summary);
    Ok(())
}
