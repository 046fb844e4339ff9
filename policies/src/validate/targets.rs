//! Validation of what a rule matches: an egress rule's destinations (`to`) and an ingress rule's
//! sources (`from`, which may also name the peer nodes and workloads).

use ipnet::IpNet;

use super::codes::country_list;
use super::country_groups::{rule_groups, PolicyGroups};
use super::dns::fqdn_list;
use super::selector::selector;
use super::values::named_cidr_list;
use crate::countries::CountryCode;
use crate::diagnostic::Diagnostic;
use crate::fields::{boolean, fields};
use crate::model::{Fqdn, Selector};
use crate::yaml_tree::Node;

/// Which list a rule is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Direction {
    /// `spec.egress`: the rule matches destinations (`to`).
    Egress,
    /// `spec.ingress`: the rule matches sources (`from`).
    Ingress,
}

impl Direction {
    /// `"egress"` or `"ingress"`: the field in spec.
    pub fn field(self) -> &'static str {
        match self {
            Direction::Egress => "egress",
            Direction::Ingress => "ingress",
        }
    }

    /// `"to"` or `"from"`: the rule's field naming what it matches.
    pub fn target(self) -> &'static str {
        match self {
            Direction::Egress => "to",
            Direction::Ingress => "from",
        }
    }

    /// `"rule"` or `"ingress rule"`, as messages name a rule.
    pub fn noun(self) -> &'static str {
        match self {
            Direction::Egress => "rule",
            Direction::Ingress => "ingress rule",
        }
    }
}

/// A rule's validated `to` or `from`.
pub(super) struct Targets {
    pub cidrs: Vec<IpNet>,
    /// `countries` plus the members of `countryGroups`, sorted, deduplicated.
    pub countries: Vec<CountryCode>,
    pub groups: Vec<String>,
    /// `to.fqdns` (always empty in `from`).
    pub fqdns: Vec<Fqdn>,
    /// `from.peers` (always false in `to`).
    pub peers: bool,
    /// `from.workloads` (always `None` in `to`).
    pub workloads: Option<Selector>,
}

/// The `to` or `from` (per `dir`) of the rule `label`; `peers_given`: `spec.peers` is set.
pub(super) fn targets(
    node: &Node,
    dir: Direction,
    label: &str,
    groups: &PolicyGroups,
    peers_given: bool,
    diags: &mut Vec<Diagnostic>,
) -> Option<Targets> {
    let t = dir.target();
    let keys: &[&str] = match dir {
        Direction::Egress => &["cidrs", "countries", "countryGroups", "fqdns"],
        Direction::Ingress => &["cidrs", "countries", "countryGroups", "peers", "workloads"],
    };
    let ctx = format!("in {label}");
    let f = fields(node, keys, &format!("\"{t}\" in {label}"), &format!("in \"{t}\" of {label}"), diags)?;
    if keys.iter().all(|k| f.get(k).is_none()) {
        let names: Vec<String> = keys.iter().map(|k| format!("\"{k}\"")).collect();
        diags.push(node.error(format!("\"{t}\" in {label} needs at least one of {}", names.join(", "))));
        return None;
    }
    let before = diags.len();
    let cidrs =
        f.get("cidrs").map_or(Some(Vec::new()), |l| named_cidr_list(l, &format!("{t}.cidrs"), &ctx, diags));
    let countries = f
        .get("countries")
        .map_or(Some(Vec::new()), |l| country_list(l, &format!("{t}.countries"), &ctx, diags));
    let fqdns = f.get("fqdns").map_or(Some(Vec::new()), |l| fqdn_list(l, "to.fqdns", &ctx, diags));
    let named_groups = match f.get("countryGroups") {
        None => Some((Vec::new(), Vec::new())),
        Some(list) => rule_groups(list, groups, &format!("{t}.countryGroups"), &ctx, diags),
    };
    let peers = match f.get("peers") {
        None => Some(false),
        Some(p) => boolean(p, "peers", &format!("in \"from\" of {label}"), diags).inspect(|&peers| {
            if peers && !peers_given {
                diags.push(p.error(format!(
                    "\"from.peers: true\" {ctx} matches nothing: spec.peers lists no peer nodes; add spec.peers.cidrs or remove it"
                )));
            }
        }),
    };
    let workloads = f.get("workloads").map(|w| {
        let what = format!("\"from.workloads\" of {label}");
        selector(w, &what, "a workload selector needs at least one label", diags)
    });
    let (names, members) = named_groups?;
    let mut countries = countries?;
    countries.extend(members);
    countries.sort_unstable();
    countries.dedup();
    let targets = Targets {
        cidrs: cidrs?,
        countries,
        groups: names,
        fqdns: fqdns?,
        peers: peers?,
        workloads: workloads.map_or(Some(None), |w| w.map(Some))?,
    };
    let nothing = targets.cidrs.is_empty()
        && targets.fqdns.is_empty()
        && targets.countries.is_empty()
        && !targets.peers
        && targets.workloads.is_none();
    if nothing && diags.len() == before {
        diags.push(
            node.error(format!(
                "\"{t}\" in {label} matches no source: \"peers: false\" alone selects nothing"
            )),
        );
        return None;
    }
    Some(targets)
}
