//! What the inspection commands print: `status`, `flows`, `blocks`, and `release`. They read the
//! pinned maps directly, so they work whether or not an agent is running.
use std::path::Path;

use crate::{
    bpf,
    error::AgentError,
    exfil::{BlockTable, Selector},
    flows::FlowTable,
    geo::GeoStatus,
    maps::PinnedMaps,
};

/// `status`: the policy in force, the hooks attached, the geo database and every kernel counter.
pub fn status(bpffs: &Path, json: bool) -> Result<(), AgentError> {
    let attached = bpf::has_pinned_links(bpffs);
    if !attached && !bpffs.exists() {
        println!("not enforcing: nothing pinned under {}", bpffs.display());
        return Ok(());
    }
    let maps = PinnedMaps::open(bpffs)?;
    let active = maps.active_policy(ringfence_common::DEFAULT_POLICY)?;
    let stats = maps.stats()?;
    let geo = GeoStatus::from(&maps.geo_info(ringfence_common::DEFAULT_POLICY)?);
    let hooks = bpf::pinned_links(bpffs);
    let packet_path = std::fs::read_dir(bpf::links_dir(bpffs))
        .map(|d| {
            d.filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().starts_with(ringfence_common::TC_EGRESS))
        })
        .unwrap_or(false);
    let packet_sockets = if hooks.contains(&ringfence_common::SOCKET_CREATE) {
        bpf::PacketSockets::Refused
    } else if packet_path {
        bpf::PacketSockets::PacketPath
    } else {
        bpf::PacketSockets::Unpoliced
    };
    if json {
        let v = serde_json::json!({
            "attached": attached, "bpffs": bpffs, "policy": active, "hooks": hooks,
            "packet_sockets": packet_sockets.as_str(), "raw_sockets": active.raw_sockets,
            "counters": stats, "geo": geo
        });
        println!("{v}");
        return Ok(());
    }
    let db = match (&geo.database_type, &geo.build_date) {
        (Some(t), Some(d)) => format!("{t} built {d}, {} networks", geo.networks),
        _ => "none".to_string(),
    };
    println!("attached:   {attached} ({})", bpffs.display());
    println!("hooks:      {}", if hooks.is_empty() { "none".to_string() } else { hooks.join(", ") });
    println!(
        "sockets:    raw IP sockets {}; packet/XDP sockets {}",
        if active.raw_sockets == "policy" { "allowed, their packets decided" } else { "refused" },
        packet_sockets.as_str()
    );
    println!("geo-ip:     {db}; {} IPv4 + {} IPv6 entries loaded", geo.entries_v4, geo.entries_v6);
    println!(
        "policy:     generation {} (slot {}), mode {}, default {}",
        active.generation, active.slot, active.mode, active.default_action
    );
    let s = &stats;
    println!("connects:   allowed {}, denied {}, audited {}", s.allowed, s.denied, s.audited);
    println!(
        "packets:    backstop dropped {} (decided {}), packet path dropped {}, plaintext dropped {}, non-IP dropped {}",
        s.backstop_dropped, s.backstop_decided, s.packets_dropped, s.plaintext_dropped, s.nonip_dropped
    );
    println!(
        "other:      exfiltration blocked {}, sockets refused {} (guard saw {}), events dropped {}",
        s.exfil_blocked, s.sockets_refused, s.socket_guard_seen, s.events_dropped
    );
    println!(
        "budgets:    dropped {}, rate-capped {}, untracked (fail closed) {}, destinations tracked {}",
        s.budget_dropped, s.rate_dropped, s.budget_untracked, s.budget_destinations
    );
    Ok(())
}

/// `flows`: the packet path's per-flow counters.
/// Flows name the workload of their cgroup (and its labels) when the agent in `state_dir` runs
/// with `--cgroup-root`.
pub fn flows(bpffs: &Path, state_dir: &Path, json: bool) -> Result<(), AgentError> {
    let flows = FlowTable::open(bpffs)?.flows()?;
    let workloads = crate::workloads::recorded(state_dir);
    if json {
        let rows: Vec<serde_json::Value> = flows
            .iter()
            .map(|f| {
                let mut v = serde_json::to_value(f).expect("flow serializes");
                let w = workloads.get(&f.cgroup_id);
                v["workload"] = w.map(|(p, _)| p.as_str()).into();
                v["labels"] = w.map(|(_, l)| l.as_str()).into();
                v
            })
            .collect();
        println!("{}", serde_json::Value::from(rows));
        return Ok(());
    }
    println!(
        "{:<5} {:>40} {:>40} {:>14} {:>14} {:>8} {:>10}  workload",
        "proto", "local", "remote", "tx bytes", "rx bytes", "dropped", "cgroup"
    );
    for f in flows {
        let workload = workloads.get(&f.cgroup_id).map_or("", |(p, _)| p.as_str());
        println!(
            "{:<5} {:>40} {:>40} {:>14} {:>14} {:>8} {:>10}  {workload}",
            f.protocol,
            format!("{}:{}", f.local, f.local_port),
            format!("{}:{}", f.remote, f.remote_port),
            f.tx_bytes,
            f.rx_bytes,
            f.dropped_packets,
            f.cgroup_id
        );
    }
    Ok(())
}

/// `blocks`: the exfiltration blocks in force.
pub fn blocks(bpffs: &Path, json: bool) -> Result<(), AgentError> {
    let list = BlockTable::open(bpffs)?.list()?;
    if json {
        println!("{}", serde_json::to_string(&list).expect("blocks serialize"));
        return Ok(());
    }
    if list.is_empty() {
        println!("no exfiltration blocks");
    }
    for b in list {
        println!(
            "cgroup {:>10}  destination {:<40} expires in {}s (set {}s ago)",
            b.cgroup_id, b.destination, b.expires_in_secs, b.age_secs
        );
    }
    Ok(())
}

/// `release`: lifts exfiltration blocks; a running agent notices and starts counting afresh.
pub fn release(bpffs: &Path, sel: &Selector) -> Result<(), AgentError> {
    let lifted = BlockTable::open(bpffs)?.release(sel)?;
    if lifted.is_empty() {
        println!("no matching exfiltration block");
    }
    for b in &lifted {
        tracing::info!(cgroup_id = b.cgroup_id, destination = %b.destination, "exfiltration block released by operator");
        println!("released: cgroup {} -> {}", b.cgroup_id, b.destination);
    }
    Ok(())
}
