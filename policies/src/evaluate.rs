//! The reference evaluation of a policy for one destination, with a human-readable explanation.
//!
//! Candidate rules are the rules with a CIDR containing the address whose port entries match the
//! port and protocol (a rule without `ports` matches everything). Deny candidates beat allow
//! candidates; within an action the candidate with the longest matching prefix decides (ties:
//! lowest rule id). Without candidates the default action applies. In audit mode a deny verdict
//! is turned into an allow with `audited = true`.

use ipnet::IpNet;
use serde::Serialize;

use crate::destination::Destination;
use crate::model::{normalize_addr, normalize_net, Action, Mode, Policy, Rule};

/// The verdict for one destination.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The action actually taken (in audit mode a deny becomes allow).
    pub action: Action,
    /// True if the policy denied but audit mode allowed the connection.
    pub audited: bool,
    /// The deciding rule id, `None` if the default action decided.
    pub rule: Option<u32>,
    /// The deciding rule's longest CIDR containing the address.
    pub matched_prefix: Option<IpNet>,
    /// Human-readable evaluation steps.
    pub explanation: Vec<String>,
}

/// A rule that matched the destination.
struct Candidate<'a> {
    rule: &'a Rule,
    prefix: IpNet,
}

fn rule_label(rule: &Rule) -> String {
    format!("rule {} \"{}\" ({})", rule.id, rule.name, rule.action)
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

impl Policy {
    /// Evaluates the policy for `dest` (the reference semantics; the kernel implements the same).
    pub fn evaluate(&self, dest: &Destination) -> Decision {
        let mut steps = Vec::new();
        let addr = normalize_addr(dest.addr);
        if addr != dest.addr {
            steps.push(format!("{} is an IPv4-mapped IPv6 address; evaluating it as {addr}", dest.addr));
        }
        if dest.port.is_none() {
            steps.push("no destination port given: only rules without \"ports\" can match".to_owned());
        }
        let port_text = dest
            .port
            .map_or_else(|| format!("(no port)/{}", dest.protocol), |p| format!("{p}/{}", dest.protocol));
        let (mut deny, mut allow) = (Vec::new(), Vec::new());
        for rule in &self.rules {
            let matching = rule.cidrs.iter().map(|n| normalize_net(*n)).filter(|n| n.contains(&addr));
            let Some(prefix) = matching.max_by_key(|n| n.prefix_len()) else {
                continue;
            };
            let label = rule_label(rule);
            let port_ok = if rule.ports.is_empty() {
                steps.push(format!("{label}: {prefix} contains {addr}; the rule applies to all ports"));
                true
            } else if let Some(entry) = rule.ports.iter().find(|p| p.matches(dest.port, dest.protocol)) {
                steps.push(format!(
                    "{label}: {prefix} contains {addr}; port entry {entry} matches {port_text}"
                ));
                true
            } else {
                let entries: Vec<String> = rule.ports.iter().map(ToString::to_string).collect();
                steps.push(format!(
                    "{label}: {prefix} contains {addr}, but {port_text} matches none of its ports ({}); rule skipped",
                    entries.join(", ")
                ));
                false
            };
            if port_ok {
                let list = if rule.action == Action::Deny { &mut deny } else { &mut allow };
                list.push(Candidate { rule, prefix });
            }
        }
        let decided = if !deny.is_empty() {
            if !allow.is_empty() {
                steps.push(format!(
                    "deny rules take precedence over the {} matching allow rule(s)",
                    allow.len()
                ));
            }
            Some(winner(&deny, &mut steps))
        } else if !allow.is_empty() {
            Some(winner(&allow, &mut steps))
        } else {
            if !self.rules.iter().any(|r| r.cidrs.iter().any(|n| normalize_net(*n).contains(&addr))) {
                steps.push(format!("no rule's CIDRs contain {addr}"));
            }
            steps.push(format!("no rule matches; the default action ({}) applies", self.default_action));
            None
        };
        let verdict = decided.map_or(self.default_action, |c| c.rule.action);
        let audited = verdict == Action::Deny && self.mode == Mode::Audit;
        if audited {
            steps.push(
                "mode is audit: the deny is not enforced; the connection is allowed and reported".to_owned(),
            );
        }
        Decision {
            action: if audited { Action::Allow } else { verdict },
            audited,
            rule: decided.map(|c| c.rule.id),
            matched_prefix: decided.map(|c| c.prefix),
            explanation: steps,
        }
    }
}
