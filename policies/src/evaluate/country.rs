//! Steps 2-4 of the reference evaluation, for destinations no CIDR rule decided: country rules,
//! `unknownCountry`, and the default action.

use std::net::IpAddr;

use ipnet::IpNet;

use super::decision::{explain_ports, rule_label, DecidedBy};
use crate::countries::{country_name, country_str, CountryCode};
use crate::destination::Destination;
use crate::geo::GeoDb;
use crate::model::{Action, Policy, Rule};

/// The outcome of steps 2-4.
pub(super) struct GeoStep<'a> {
    /// The address's country per the database.
    pub country: Option<CountryCode>,
    /// The database network holding the address.
    pub network: Option<IpNet>,
    /// The deciding country rule.
    pub rule: Option<&'a Rule>,
    pub action: Action,
    pub decided_by: DecidedBy,
}

/// `DE (Germany)`.
fn describe(code: CountryCode) -> String {
    match country_name(code) {
        Some(name) => format!("{} ({name})", country_str(&code)),
        None => country_str(&code).to_owned(),
    }
}

/// Steps 2-4 for `addr` (already normalized), appending explanation lines to `steps`.
pub(super) fn country_step<'a>(
    policy: &'a Policy,
    addr: IpAddr,
    dest: &Destination,
    port_text: &str,
    geo: Option<&GeoDb>,
    steps: &mut Vec<String>,
) -> GeoStep<'a> {
    let geo_policy = policy.references_countries();
    let looked_up = geo.and_then(|g| g.lookup(addr));
    match (geo, looked_up) {
        (None, _) if geo_policy => {
            steps.push(format!("no geo-IP database given: the country of {addr} is unknown"))
        }
        (None, _) => {}
        (Some(_), Some((net, code))) => steps.push(format!(
            "the geo-IP database places {addr} in {} (database network {net})",
            describe(code)
        )),
        (Some(_), None) => steps.push(format!("the geo-IP database has no country for {addr}")),
    }
    let default = |steps: &mut Vec<String>, why: String| {
        steps.push(why);
        (policy.default_action, DecidedBy::Default)
    };
    let mut decided: Option<&Rule> = None;
    let (action, decided_by) = match looked_up {
        Some((_, code)) => {
            let (mut deny, mut allow) = (Vec::new(), Vec::new());
            for rule in policy.rules.iter().filter(|r| r.countries.contains(&code)) {
                if country_rule_matches(rule, code, dest, port_text, steps) {
                    if rule.action == Action::Deny {
                        deny.push(rule)
                    } else {
                        allow.push(rule)
                    }
                }
            }
            if !deny.is_empty() && !allow.is_empty() {
                steps.push(format!(
                    "deny rules take precedence over the {} matching allow country rule(s)",
                    allow.len()
                ));
            }
            let candidates = if deny.is_empty() { &allow } else { &deny };
            if let Some(rule) = candidates.first() {
                decided = Some(rule);
                if candidates.len() > 1 {
                    steps.push(format!(
                        "{} decides: the lowest rule id among {} matching {} country rules",
                        rule_label(rule),
                        candidates.len(),
                        rule.action
                    ));
                } else {
                    steps.push(format!(
                        "{} decides as the only matching {} country rule",
                        rule_label(rule),
                        rule.action
                    ));
                }
                (rule.action, DecidedBy::CountryRule)
            } else if policy.rules.iter().any(|r| !r.countries.is_empty()) {
                let what = format!("no country rule matches {} at {port_text}", country_str(&code));
                default(steps, format!("{what}; the default action ({}) applies", policy.default_action))
            } else {
                default(
                    steps,
                    format!("no rule matches; the default action ({}) applies", policy.default_action),
                )
            }
        }
        None => match policy.unknown_country {
            Some(action) => {
                steps.push(format!("{addr} has no country: unknownCountry ({action}) applies"));
                (action, DecidedBy::UnknownCountry)
            }
            None if geo_policy => default(
                steps,
                format!(
                    "{addr} has no country and unknownCountry is not set; the default action ({}) applies",
                    policy.default_action
                ),
            ),
            None => default(
                steps,
                format!("no rule matches; the default action ({}) applies", policy.default_action),
            ),
        },
    };
    GeoStep {
        country: looked_up.map(|(_, c)| c),
        network: looked_up.map(|(n, _)| n),
        rule: decided,
        action,
        decided_by,
    }
}

/// Whether a rule naming `code` matches the port and protocol; explains either way.
fn country_rule_matches(
    rule: &Rule,
    code: CountryCode,
    dest: &Destination,
    port_text: &str,
    steps: &mut Vec<String>,
) -> bool {
    let via = if rule.country_groups.is_empty() {
        String::new()
    } else {
        format!(" (its groups: {})", rule.country_groups.join(", "))
    };
    explain_ports(rule, &format!("names {}{via}", country_str(&code)), dest, port_text, steps)
}
