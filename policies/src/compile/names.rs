//! The domain names of a policy in kernel form: per name pattern (exact or wildcard) the match
//! list of the allow rules naming it and whether it is an approved sink; the pinned resolvers and the known DNS-over-HTTPS
//! endpoints.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use ringfence_common::{MatchItem, MatchList, MAX_ITEMS, MAX_NAMES, RULE_DEFAULT};

use super::error::CompileError;
use super::trie::{intern, items_of};
use crate::model::{Action, Fqdn, Policy};

/// One name pattern of the policy as the kernel's name map holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledName {
    /// `NAME_EXACT` or `NAME_WILDCARD`.
    pub kind: u32,
    /// `name_hash` of the pattern's base in wire form.
    pub hash: u64,
    /// The match list of the allow rules naming the pattern.
    pub list_id: u32,
    /// The first of those rules (`RULE_DEFAULT` for a name only the approved sinks hold).
    pub rule_id: u32,
    /// Addresses answered for the name are approved sinks (`approvedSinks.fqdns`).
    pub sink: bool,
    pub pattern: Fqdn,
}

/// Well-known DNS-over-HTTPS endpoints, refused on port 443 for policies that use DNS (so a
/// workload cannot walk around the pinned resolvers). As of 2026-12; a public list such as
/// curl's DoH wiki has more (extend `DOH_ENDPOINTS`; a resolver of `spec.dns` is never refused).
pub const DOH_LIST_DATE: &str = "2026-12-01";
pub const DOH_ENDPOINTS: &[&str] = &[
    "1.1.1.1",
    "1.0.0.1",
    "1.1.1.2",
    "1.0.0.2",
    "1.1.1.3",
    "1.0.0.3",
    "2606:4700:4700::1111",
    "2606:4700:4700::1001",
    "8.8.8.8",
    "8.8.4.4",
    "2001:4860:4860::8888",
    "2001:4860:4860::8844",
    "9.9.9.9",
    "149.112.112.112",
    "9.9.9.11",
    "149.112.112.11",
    "2620:fe::fe",
    "2620:fe::9",
    "208.67.222.222",
    "208.67.220.220",
    "2620:119:35::35",
    "2620:119:53::53",
    "94.140.14.14",
    "94.140.15.15",
    "2a10:50c0::ad1:ff",
    "2a10:50c0::ad2:ff",
    "185.228.168.168",
    "185.228.169.168",
    "76.76.2.0",
    "76.76.10.0",
    "45.90.28.0",
    "45.90.30.0",
    "194.242.2.2",
    "2a07:e340::2",
];

/// The DoH endpoints as addresses, without the policy's own resolvers.
pub fn doh_endpoints(policy: &Policy) -> Vec<IpAddr> {
    DOH_ENDPOINTS
        .iter()
        .map(|a| a.parse::<IpAddr>().expect("the shipped list holds addresses"))
        .filter(|a| !policy.dns.resolvers.contains(a))
        .collect()
}

/// One kernel entry per name pattern of the allow rules and of the approved sinks. The kernel
/// learns an answer under the longest pattern matching the question, so each entry carries the
/// items of every allow pattern covering it (`*.hf.co` on 443 and `cdn.hf.co` on 80 give
/// `cdn.hf.co` both) and is a sink if a sink pattern covers it. The lists are shared with the
/// tries' through `dedup`.
pub(super) fn build_names(
    policy: &Policy,
    dedup: &mut HashMap<MatchList, u32>,
    lists: &mut Vec<MatchList>,
) -> Result<Vec<CompiledName>, CompileError> {
    let mut allowed: BTreeMap<&Fqdn, Vec<MatchItem>> = BTreeMap::new();
    for rule in policy.rules.iter().filter(|r| r.action == Action::Allow) {
        let items = items_of(rule);
        for name in &rule.fqdns {
            allowed.entry(name).or_default().extend(items.iter().copied());
        }
    }
    let sinks = policy.sink_fqdns();
    let patterns: BTreeSet<&Fqdn> = allowed.keys().copied().chain(sinks).collect();
    if patterns.len() > MAX_NAMES as usize / 2 {
        return Err(CompileError::TooManyNames { names: patterns.len(), max: MAX_NAMES as usize / 2 });
    }
    let mut names = Vec::with_capacity(patterns.len());
    for pattern in patterns {
        let mut items: Vec<MatchItem> = allowed
            .iter()
            .filter(|(p, _)| pattern.covered_by(p))
            .flat_map(|(_, own)| own.iter().copied())
            .collect();
        // First rule first (the kernel takes the first item that matches), each item once.
        items.sort_by_key(|i| i.rule_id);
        items.dedup();
        if items.len() > MAX_ITEMS {
            return Err(CompileError::TooManyNameItems {
                name: pattern.to_string(),
                items: items.len(),
                max: MAX_ITEMS,
            });
        }
        let mut list = MatchList { len: items.len() as u32, ..Default::default() };
        list.items[..items.len()].copy_from_slice(&items);
        let (kind, hash) = pattern.kernel_key();
        names.push(CompiledName {
            kind,
            hash,
            list_id: intern(list, dedup, lists),
            rule_id: items.first().map_or(RULE_DEFAULT, |i| i.rule_id),
            sink: sinks.iter().any(|s| pattern.covered_by(s)),
            pattern: pattern.clone(),
        });
    }
    Ok(names)
}
