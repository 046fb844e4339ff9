//! The validated policy: its rules, regions, peers and settings, and the questions the
//! compiler, the evaluator and the agent ask of it.

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::Serialize;

use super::dns::{Dns, Fqdn};
use super::exfil::Exfiltration;
use super::rule::{Action, Mode, RawSockets, Rule};
use super::selector::Selector;
use crate::countries::{serialize_codes, CountryCode};

/// One `spec.regions` entry: where a region's addresses are.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Region {
    /// `countries` plus the members of `countryGroups`, deduplicated and sorted. Serialized as
    /// `["DE", ...]`.
    #[serde(serialize_with = "serialize_codes")]
    pub countries: Vec<CountryCode>,
    /// Network-form CIDRs (IPv4-mapped IPv6 already converted to IPv4).
    pub cidrs: Vec<IpNet>,
}

/// A validated `EgressPolicy`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// `metadata.name`.
    pub name: String,
    pub mode: Mode,
    pub default_action: Action,
    /// In `spec.egress` order; `rules[i].id == i + 1`.
    pub rules: Vec<Rule>,
    /// `spec.unknownCountry`: what happens to addresses the geo-IP database has no country for
    /// (after CIDR rules). `None` = the default action decides them.
    pub unknown_country: Option<Action>,
    /// `spec.peers.cidrs`: peer node addresses; traffic to them must always be encrypted.
    pub peers: Vec<IpNet>,
    /// `spec.regions`, by name.
    pub regions: BTreeMap<String, Region>,
    /// `spec.crossBorder.homeRegion` (a key of `regions`): with it set, traffic to every address
    /// outside the home region must be encrypted.
    pub cross_border: Option<String>,
    /// `spec.exfiltration`: weight-exfiltration detection rules (not compiled into the kernel
    /// tries; the agent applies them to flow counters in user space).
    pub exfiltration: Option<Exfiltration>,
    /// `spec.rawSockets`.
    pub raw_sockets: RawSockets,
    /// `spec.workloadSelector`: the workloads this policy enforces. `None` = a node-default
    /// policy, for the workloads no other policy selects.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<Selector>,
    /// `spec.ingress`, in order; `ingress[i].id == i + 1` (their own numbering). Their
    /// `cidrs`/`countries` are sources, their `ports` the workload's own ports.
    pub ingress: Vec<Rule>,
    /// `spec.defaultIngress`; when not given, `deny` if `spec.ingress` is given and `allow` if
    /// not (a policy without ingress settings enforces no ingress).
    pub default_ingress: Action,
    /// `spec.dns`.
    pub dns: Dns,
}

impl Policy {
    /// The rule with the given 1-based id.
    pub fn rule(&self, id: u32) -> Option<&Rule> {
        let index = usize::try_from(id).ok()?.checked_sub(1)?;
        self.rules.get(index).filter(|r| r.id == id)
    }

    /// The ingress rule with the given 1-based id.
    pub fn ingress_rule(&self, id: u32) -> Option<&Rule> {
        let index = usize::try_from(id).ok()?.checked_sub(1)?;
        self.ingress.get(index).filter(|r| r.id == id)
    }

    /// True if incoming connections are decided: there are ingress rules or `defaultIngress`
    /// is `deny`. False for policies without ingress settings (everything is accepted).
    pub fn enforces_ingress(&self) -> bool {
        !self.ingress.is_empty() || self.default_ingress == Action::Deny
    }

    /// True if the ingress rules need a geo-IP database (some name countries). Independent of
    /// [`Policy::references_countries`], which is about the egress tries.
    pub fn ingress_references_countries(&self) -> bool {
        self.ingress.iter().any(|r| !r.countries.is_empty())
    }

    /// True if the policy needs a geo-IP database: a rule names countries (directly or through
    /// a group), `unknownCountry` is set, or `crossBorder` is set and its home region names
    /// countries.
    pub fn references_countries(&self) -> bool {
        self.unknown_country.is_some()
            || self.rules.iter().any(|r| !r.countries.is_empty())
            || self.home_region().is_some_and(|r| !r.countries.is_empty())
    }

    /// Every country the geo-IP database is needed for: those some rule names plus, with
    /// crossBorder, those of the home region; sorted, without duplicates.
    pub fn geo_countries(&self) -> Vec<CountryCode> {
        let mut all = self.countries();
        all.extend(self.home_region().map(|r| r.countries.iter().copied()).into_iter().flatten());
        all.sort_unstable();
        all.dedup();
        all
    }

    /// The home region (`crossBorder.homeRegion`), if `crossBorder` is set.
    pub fn home_region(&self) -> Option<&Region> {
        self.cross_border.as_ref().and_then(|name| self.regions.get(name))
    }

    /// True if any encryption requirement is configured (peers, crossBorder, or a rule with
    /// `encryption: required`).
    pub fn uses_encryption(&self) -> bool {
        !self.peers.is_empty()
            || self.cross_border.is_some()
            || self.rules.iter().any(|r| r.encryption_required)
    }

    /// True if `spec.exfiltration` approves countries, so telling approved destinations apart
    /// needs a geo-IP database in the agent (independent of [`Policy::references_countries`],
    /// which is about the kernel's tries).
    pub fn exfiltration_needs_geo(&self) -> bool {
        self.exfiltration.as_ref().is_some_and(|e| !e.approved.countries.is_empty())
    }

    /// True if some rule or approved sink names domains or resolvers are pinned: DNS answers
    /// are learned and DNS is confined to the resolvers.
    pub fn uses_dns(&self) -> bool {
        !self.dns.resolvers.is_empty()
            || self.rules.iter().any(|r| !r.fqdns.is_empty())
            || !self.sink_fqdns().is_empty()
    }

    /// `spec.exfiltration.approvedSinks.fqdns` (empty without that section).
    pub fn sink_fqdns(&self) -> &[Fqdn] {
        self.exfiltration.as_ref().map_or(&[], |x| &x.approved.fqdns)
    }

    /// Every country some rule names, sorted, without duplicates.
    pub fn countries(&self) -> Vec<CountryCode> {
        let mut all: Vec<CountryCode> = self.rules.iter().flat_map(|r| r.countries.iter().copied()).collect();
        all.sort_unstable();
        all.dedup();
        all
    }
}
