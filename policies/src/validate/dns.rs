//! Validation of domain names: a rule's `to.fqdns` and the policy's `spec.dns`.

use std::net::IpAddr;

use crate::diagnostic::Diagnostic;
use crate::fields::{fields, non_empty_sequence, string};
use crate::model::{wire_form, Dns, Fqdn};
use crate::yaml_tree::Node;

/// Names per rule.
const MAX_FQDNS_PER_RULE: usize = 256;

/// One name pattern: `name.example` or `*.name.example`; labels of letters, digits, `-` and
/// `_` (1 to 63 bytes, no leading or trailing `-`), at least two labels, at most 253
/// characters; lowercased, a trailing dot dropped.
fn fqdn(node: &Node, ctx: &str, diags: &mut Vec<Diagnostic>) -> Option<Fqdn> {
    let text = string(node, &format!("a domain name {ctx}"), diags)?.trim();
    let lower = text.trim_end_matches('.').to_ascii_lowercase();
    let base = lower.strip_prefix("*.").unwrap_or(&lower);
    let problem = if base.contains('*') {
        Some("\"*\" is only allowed as the whole first label (\"*.example.com\": one label or more in front of example.com)".to_owned())
    } else if wire_form(base).len() > 255 || base.len() > 253 {
        Some("a name is at most 253 characters".to_owned())
    } else if base.split('.').count() < 2 {
        Some("name a domain with at least two labels (e.g. \"pypi.org\"); a top-level domain alone is too broad".to_owned())
    } else {
        base.split('.').find_map(label_problem)
    };
    match problem {
        Some(p) => {
            diags.push(node.error(format!("invalid domain name \"{text}\" {ctx}: {p}")));
            None
        }
        None => Some(Fqdn(lower)),
    }
}

fn label_problem(label: &str) -> Option<String> {
    if label.is_empty() || label.len() > 63 {
        return Some(format!("label \"{label}\" must be 1 to 63 characters"));
    }
    if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Some(format!("label \"{label}\" may hold only letters, digits, \"-\" and \"_\""));
    }
    if label.starts_with('-') || label.ends_with('-') {
        return Some(format!("label \"{label}\" must not start or end with \"-\""));
    }
    None
}

/// `to.fqdns` (`field`; or `approvedSinks.fqdns`): a non-empty list of names, sorted and
/// deduplicated.
pub(super) fn fqdn_list(
    list: &Node,
    field: &str,
    ctx: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<Vec<Fqdn>> {
    let items = non_empty_sequence(list, field, ctx, "", diags)?;
    if items.len() > MAX_FQDNS_PER_RULE {
        diags.push(list.error(format!(
            "{} names in \"{field}\" {ctx}, more than the limit of {MAX_FQDNS_PER_RULE}; use a wildcard (\"*.example.com\") or split the list",
            items.len()
        )));
        return None;
    }
    let before = diags.len();
    let mut names: Vec<Fqdn> = items.iter().filter_map(|n| fqdn(n, ctx, diags)).collect();
    names.sort_unstable();
    names.dedup();
    (diags.len() == before).then_some(names)
}

/// `spec.dns`: `resolvers` (addresses) and `minTTL` (seconds).
pub(super) fn dns(node: &Node, diags: &mut Vec<Diagnostic>) -> Option<Dns> {
    let ctx = "in spec.dns";
    let f = fields(node, &["resolvers", "minTTL"], "spec.dns", ctx, diags)?;
    let resolvers = match f.get("resolvers") {
        None => Some(Vec::new()),
        Some(list) => {
            let items = non_empty_sequence(list, "resolvers", ctx, "", diags)?;
            let before = diags.len();
            let mut addrs: Vec<IpAddr> = items
                .iter()
                .filter_map(|item| {
                    let text = string(item, &format!("a resolver address {ctx}"), diags)?.trim();
                    let parsed = text.parse::<IpAddr>().ok().map(|a| a.to_canonical());
                    if parsed.is_none() {
                        diags.push(item.error(format!(
                            "invalid resolver \"{text}\" {ctx}: expected an IP address (e.g. 192.0.2.53); resolvers are queried on port 53"
                        )));
                    }
                    parsed
                })
                .collect();
            addrs.sort_unstable();
            addrs.dedup();
            (diags.len() == before).then_some(addrs)
        }
    };
    let min_ttl_secs = match f.get("minTTL") {
        None => Some(Dns::DEFAULT_MIN_TTL_SECS),
        Some(n) => {
            let text = string(n, &format!("\"minTTL\" {ctx}"), diags)?.trim();
            let secs = text.trim_end_matches('s').parse::<u32>().ok().filter(|s| *s <= Dns::MAX_MIN_TTL_SECS);
            if secs.is_none() {
                diags.push(n.error(format!(
                    "invalid \"minTTL\" \"{text}\" {ctx}: expected seconds from 0 to {} (e.g. 60 or 60s)",
                    Dns::MAX_MIN_TTL_SECS
                )));
            }
            secs
        }
    };
    Some(Dns { resolvers: resolvers?, min_ttl_secs: min_ttl_secs? })
}
