//! The reference evaluation of a policy for one destination, with a human-readable explanation.
//!
//! 1. CIDR rules: the candidates are the rules with a CIDR containing the address whose port
//!    entries match the port and protocol (a rule without `ports` matches everything). Deny
//!    candidates beat allow candidates; within an action the candidate with the longest matching
//!    prefix decides (ties: lowest rule id).
//! 2. Country rules (module `country`): if the database gives the address a country,
//!    the rules naming that country whose ports match are candidates; deny beats allow, then the
//!    lowest rule id.
//! 3. No country for the address: `unknownCountry` if set.
//! 4. The default action.
//!
//! In audit mode a deny verdict is turned into an allow with `audited = true`.
//!
//! The parts: `cidr` (step 1) and `country` (steps 2-4) both use `decision` (the result types);
//! this module runs them and adds the encryption requirement and audit mode. `ingress` decides
//! incoming connections by running the same evaluation on the ingress rules.

mod cidr;
mod country;
mod decision;
mod ingress;

use std::net::IpAddr;

use cidr::cidr_step;
use country::country_step;
pub use decision::{DecidedBy, Decision};

use crate::destination::Destination;
use crate::geo::GeoDb;
use crate::model::{Action, Mode, Policy, Protocol, Rule};
use crate::prefix::{normalize_addr, normalize_net};

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
        let cidr_decided = cidr_step(self, addr, dest, &port_text, &mut steps);
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
