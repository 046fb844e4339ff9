//! Step 1 of the reference evaluation: CIDR rules. The candidates are the rules with a CIDR
//! containing the address whose port entries match; deny candidates beat allow candidates, and
//! within an action the longest matching prefix wins (ties: lowest rule id).

use std::net::IpAddr;

use ipnet::IpNet;

use super::decision::{explain_ports, rule_label};
use crate::destination::Destination;
use crate::model::{Action, Policy, Rule};
use crate::prefix::normalize_net;

/// A CIDR rule that matched the destination.
#[derive(Clone, Copy)]
pub(super) struct Candidate<'a> {
    pub rule: &'a Rule,
    pub prefix: IpNet,
}

/// Picks the winner: longest prefix, ties broken by the lowest id (candidates are in id order).
fn winner<'a, 'b>(candidates: &'b [Candidate<'a>], steps: &mut Vec<String>) -> &'b Candidate<'a> {
    let best = candidates.iter().fold(&candidates[0], |best, c| {
        if c.prefix.prefix_len() > best.prefix.prefix_len() {
            c
        } else {
            best
        }
    });
    let action = best.rule.action;
    let ties: Vec<String> = candidates
        .iter()
        .filter(|c| c.prefix.prefix_len() == best.prefix.prefix_len() && c.rule.id != best.rule.id)
        .map(|c| c.rule.id.to_string())
        .collect();
    if candidates.len() == 1 {
        steps.push(format!("{} is the only matching {action} rule", rule_label(best.rule)));
    } else if ties.is_empty() {
        steps.push(format!(
            "{} wins among {} matching {action} rules: its prefix {} is the longest",
            rule_label(best.rule),
            candidates.len(),
            best.prefix
        ));
    } else {
        steps.push(format!(
            "{} wins among {} matching {action} rules: longest prefix /{} (tied with rule {}; the lowest rule id wins)",
            rule_label(best.rule),
            candidates.len(),
            best.prefix.prefix_len(),
            ties.join(", ")
        ));
    }
    best
}

/// Step 1 for `addr` (already normalized): the deciding CIDR rule with its longest prefix
/// containing the address, `None` if no CIDR rule matches. Appends explanation lines to `steps`.
pub(super) fn cidr_step<'a>(
    policy: &'a Policy,
    addr: IpAddr,
    dest: &Destination,
    port_text: &str,
    steps: &mut Vec<String>,
) -> Option<Candidate<'a>> {
    let (mut deny, mut allow) = (Vec::new(), Vec::new());
    for rule in &policy.rules {
        let matching = rule.cidrs.iter().map(|n| normalize_net(*n)).filter(|n| n.contains(&addr));
        let Some(prefix) = matching.max_by_key(|n| n.prefix_len()) else {
            continue;
        };
        if explain_ports(rule, &format!("{prefix} contains {addr}"), dest, port_text, steps) {
            let list = if rule.action == Action::Deny { &mut deny } else { &mut allow };
            list.push(Candidate { rule, prefix });
        }
    }
    if !deny.is_empty() {
        if !allow.is_empty() {
            steps.push(format!("deny rules take precedence over the {} matching allow rule(s)", allow.len()));
        }
        Some(*winner(&deny, steps))
    } else if !allow.is_empty() {
        Some(*winner(&allow, steps))
    } else {
        if !policy.rules.iter().any(|r| r.cidrs.iter().any(|n| normalize_net(*n).contains(&addr))) {
            steps.push(format!("no rule's CIDRs contain {addr}"));
        }
        None
    }
}
