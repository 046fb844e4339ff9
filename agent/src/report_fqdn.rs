//! `ringfence-agent fqdn`: the addresses the kernel learned from DNS answers, per policy, with
//! the name pattern that let them in and the time they have left. Reads the pinned maps, so it
//! works whether or not an agent is running.
use std::path::Path;

use ringfence_common::{table_id, NameKey, DIR_EGRESS};
use serde::Serialize;

use crate::clock::monotonic_ns;
use crate::error::AgentError;
use crate::maps::{narrow, PinnedMaps};

/// One learned address.
#[derive(Debug, Serialize)]
pub struct LearnedEntry {
    /// Policy index (0: the node default; others: workload policies, see `workloads`).
    pub policy: u32,
    pub address: String,
    /// The pattern of the policy's active table that matched the question, or `null` when the
    /// policy no longer names it (the address is no longer allowed).
    pub name: Option<String>,
    /// The TTL of the answer that taught it.
    pub ttl_secs: u32,
    /// Time left, rounded up (0: expired, kept until the LRU map reuses the slot).
    pub expires_in_secs: u64,
}

/// Every learned entry, live ones first, then by policy and address.
pub fn learned(maps: &PinnedMaps) -> Result<Vec<LearnedEntry>, AgentError> {
    let now = monotonic_ns();
    let mut out = Vec::new();
    for (key, value) in maps.dns.learned()? {
        let (slot, _) = maps.active(key.policy)?;
        let table = table_id(key.policy, slot, DIR_EGRESS);
        let name = maps
            .dns
            .name(&NameKey { table, kind: value.kind, hash: value.name_hash })?
            .map(|r| String::from_utf8_lossy(r.text()).into_owned());
        out.push(LearnedEntry {
            policy: key.policy,
            address: narrow(key.family, key.addr).to_string(),
            name,
            ttl_secs: value.ttl,
            expires_in_secs: value.expires_ns.saturating_sub(now).div_ceil(1_000_000_000),
        });
    }
    out.sort_by(|a, b| {
        (b.expires_in_secs > 0, a.policy, &a.address).cmp(&(a.expires_in_secs > 0, b.policy, &b.address))
    });
    Ok(out)
}

/// Prints [`learned`].
pub fn fqdn(bpffs: &Path, json: bool) -> Result<(), AgentError> {
    let maps = PinnedMaps::open(bpffs)?;
    let list = learned(&maps)?;
    let stats = maps.stats()?;
    let (capacity, evicted) = (ringfence_common::MAX_LEARNED, stats.dns_evicted());
    if json {
        println!("{}", serde_json::json!({ "learned": list, "capacity": capacity, "evicted": evicted }));
        return Ok(());
    }
    println!("learned set: {} entries of {capacity}, {evicted} evicted because it was full", list.len());
    if list.is_empty() {
        println!("no learned addresses");
    }
    for l in list {
        println!(
            "policy {:>3}  {:<30} {:<40} ttl {:>5}s  expires in {}s",
            l.policy,
            l.name.as_deref().unwrap_or("(name no longer in the policy)"),
            l.address,
            l.ttl_secs,
            l.expires_in_secs
        );
    }
    Ok(())
}
