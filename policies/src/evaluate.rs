//! The reference evaluation of a policy for one destination, with a human-readable explanation.
//!
//! 1. CIDR rules: the candidates are the rules with a CIDR containing the address whose port
//!    entries match the port and protocol (a rule without `ports` matches everything). Deny
//!    candidates beat allow candidates; within an action the candidate with the longest matching
//!    prefix decides (ties: lowest rule id).
//! 2. Country rules (see [`crate::evaluate_geo`]): if the database gives the address a country,
//!    the rules naming that country whose ports match are candidates; deny beats allow, then the
//!    lowest rule id.
//! 3. No country for the address: `unknownCountry` if set.
//! 4. The default action.
//!
//! In audit mode a deny verdict is turned into an allow with `audited = true`.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

use crate::countries::{serialize_opt_code, CountryCode};
use crate::destination::Destination;
use crate::evaluate_geo::country_step;
use crate::geo::GeoDb;
use crate::model::{normalize_addr, normalize_net, Action, Mode, Policy, Protocol, Rule};

/// Which step of the precedence decided a [`Decision`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DecidedBy {
    /// A rule's CIDR (step 1).
    CidrRule,
    /// A rule naming the address's country (step 2).
    CountryRule,
    /// `unknownCountry`: the database has no country for the address (step 3).
    UnknownCountry,
    /// `defaultAction` (step 4).
    Default,
}

/// The verdict for one destination.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The action actually taken (in audit mode a deny becomes allow).
    pub action: Action,
    /// True if the policy denied but audit mode allowed the connection.
    pub audited: bool,
    /// The deciding rule id, `None` if `unknownCountry` or the default action decided.
    pub rule: Option<u32>,
    /// The deciding CIDR rule's longest CIDR containing the address (`None` unless
    /// `decided_by` is [`DecidedBy::CidrRule`]).
    pub matched_prefix: Option<IpNet>,
    /// The address's country according to the geo-IP database (`None`: no database, or no
    /// record). Serialized as `"DE"` or null.
    #[serde(serialize_with = "serialize_opt_code")]
    pub country: Option<CountryCode>,
    /// The database network that gave the country.
    pub geo_network: Option<IpNet>,
    /// Which step decided.
    pub decided_by: DecidedBy,
    /// Traffic to the destination must leave inside WireGuard: the address is a peer node
    /// (`spec.peers`), the deciding allow rule has `encryption: required`, or crossBorder is set
    /// and the address is outside the home region. Independent of the mode.
    pub encryption_required: bool,
    /// Why encryption is required (the first reason in the order above), e.g.
    /// `peer node 198.51.100.0/26`, `rule "storage" requires encryption`,
    /// `outside home region eu-west`; `None` if it is not.
    pub encryption_reason: Option<String>,
    /// Human-readable evaluation steps.
    pub explanation: Vec<String>,
}

/// A CIDR rule that matched the destination.
struct Candidate<'a> {
    rule: &'a Rule,
    prefix: IpNet,
}

pub(crate) fn rule_label(rule: &Rule) -> String {
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
    /// Evaluates the policy for `dest` without a geo-IP database: every address counts as one
    /// the database has no country for (so country rules never match and `unknownCountry`, if
    /// set, decides what CIDR rules leave open). Same as `evaluate_with_geo(dest, None)`.
    pub fn evaluate(&self, dest: &Destination) -> Decision {
        self.evaluate_with_geo(dest, None)
    }

    /// Evaluates the policy for `dest` (the reference semantics; the kernel implements the
    /// same), looking up the address's country in `geo`. `None` means "no database": the
    /// country of every address is unknown.
    pub fn evaluate_with_geo(&self, dest: &Destination, geo: Option<&GeoDb>) -> Decision {
        let mut steps = Vec::new();
        let addr = normalize_addr(dest.addr);
        if addr != dest.addr {
            steps.push(format!("{} is an IPv4-mapped IPv6 address; evaluating it as {addr}", dest.addr));
        }
        if dest.protocol == Protocol::Icmp {
            steps.push(
                "ICMP has no ports: rules without \"ports\" and icmp port entries can match".to_owned(),
            );
        } else if dest.port.is_none() {
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
        let cidr_decided = if !deny.is_empty() {
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
            None
        };
        let deciding_allow: Option<&Rule>;
        let (verdict, rule, prefix, decided_by, country, geo_network) = match cidr_decided {
            Some(c) => {
                deciding_allow = (c.rule.action == Action::Allow).then_some(c.rule);
                if self.references_countries() {
                    steps.push("a CIDR rule decided (CIDR rules come before country rules)".to_owned());
                }
                let looked_up = geo.and_then(|g| g.lookup(addr));
                (
                    c.rule.action,
                    Some(c.rule.id),
                    Some(c.prefix),
                    DecidedBy::CidrRule,
                    looked_up.map(|l| l.1),
                    looked_up.map(|l| l.0),
                )
            }
            None => {
                let step = country_step(self, addr, dest, &port_text, geo, &mut steps);
                deciding_allow = step.rule.filter(|r| r.action == Action::Allow);
                (step.action, step.rule.map(|r| r.id), None, step.decided_by, step.country, step.network)
            }
        };
        let encryption_reason = self.encryption_reason(addr, deciding_allow, geo);
        match &encryption_reason {
            Some(reason) => steps.push(format!("encryption required: {reason}")),
            None if self.uses_encryption() => {
                steps.push("encryption not required: no peer, rule or region requirement applies".to_owned())
            }
            None => {}
        }
        let audited = verdict == Action::Deny && self.mode == Mode::Audit;
        if audited {
            steps.push(
                "mode is audit: the deny is not enforced; the connection is allowed and reported".to_owned(),
            );
        }
        Decision {
            action: if audited { Action::Allow } else { verdict },
            audited,
            rule,
            matched_prefix: prefix,
            country,
            geo_network,
            decided_by,
            encryption_required: encryption_reason.is_some(),
            encryption_reason,
            explanation: steps,
        }
    }

    /// Why traffic to `addr` (normalized) must be encrypted, if it must: a peer prefix (the
    /// longest containing one), the deciding allow rule's `encryption: required`, or crossBorder
    /// with the address outside the home region.
    fn encryption_reason(
        &self,
        addr: IpAddr,
        deciding_allow: Option<&Rule>,
        geo: Option<&GeoDb>,
    ) -> Option<String> {
        let peer = self.peers.iter().map(|n| normalize_net(*n)).filter(|n| n.contains(&addr));
        if let Some(peer) = peer.max_by_key(|n| n.prefix_len()) {
            return Some(format!("peer node {peer}"));
        }
        if let Some(rule) = deciding_allow.filter(|r| r.encryption_required) {
            return Some(format!("rule \"{}\" requires encryption", rule.name));
        }
        let name = self.cross_border.as_ref()?;
        let region = self.regions.get(name)?;
        let in_cidrs = region.cidrs.iter().any(|n| normalize_net(*n).contains(&addr));
        let in_country =
            || geo.and_then(|g| g.lookup(addr)).is_some_and(|(_, code)| region.countries.contains(&code));
        (!in_cidrs && !in_country()).then(|| format!("outside home region {name}"))
    }
}
