//! Validation of the encryption parts of a policy: `spec.peers`, `spec.regions` and
//! `spec.crossBorder`. (A rule's `encryption` field is validated with the rule.)

use std::collections::BTreeMap;

use ipnet::IpNet;

use super::codes::country_list;
use super::country_groups::{rule_groups, PolicyGroups};
use super::header::named_entries;
use super::values::named_cidr_list;
use crate::diagnostic::Diagnostic;
use crate::fields::{choice, fields, string};
use crate::model::Region;
use crate::yaml_tree::Node;

/// The validated encryption settings of a spec.
#[derive(Default)]
pub(crate) struct Encryption {
    pub peers: Vec<IpNet>,
    pub regions: BTreeMap<String, Region>,
    pub cross_border: Option<String>,
}

/// Validates `spec.peers`, `spec.regions` and `spec.crossBorder` (each optional). `None` after
/// reporting a problem.
pub(crate) fn encryption(
    peers: Option<&Node>,
    regions: Option<&Node>,
    cross_border: Option<&Node>,
    groups: &PolicyGroups,
    diags: &mut Vec<Diagnostic>,
) -> Option<Encryption> {
    let before = diags.len();
    let peers = match peers {
        None => Some(Vec::new()),
        Some(node) => peer_list(node, diags),
    };
    // A region whose definition had errors maps to `None`, so that naming it in crossBorder is
    // not reported a second time.
    let regions = regions.map(|node| region_map(node, groups, diags)).unwrap_or_default();
    let cross_border = match cross_border {
        None => Some(None),
        Some(node) => home_region(node, &regions, diags).map(Some),
    };
    if diags.len() != before {
        return None;
    }
    let regions = regions.into_iter().map(|(name, r)| r.map(|r| (name, r))).collect::<Option<_>>()?;
    Some(Encryption { peers: peers?, regions, cross_border: cross_border? })
}

fn peer_list(node: &Node, diags: &mut Vec<Diagnostic>) -> Option<Vec<IpNet>> {
    let ctx = "in spec.peers";
    let f = fields(node, &["cidrs"], "\"peers\" in spec", ctx, diags)?;
    let list = f.require("cidrs", ctx, diags)?;
    let mut cidrs = named_cidr_list(list, "peers.cidrs", "in spec", diags)?;
    cidrs.sort_unstable();
    cidrs.dedup();
    Some(cidrs)
}

fn region_map(
    node: &Node,
    groups: &PolicyGroups,
    diags: &mut Vec<Diagnostic>,
) -> BTreeMap<String, Option<Region>> {
    let mut regions = BTreeMap::new();
    let shape = "region name: {countries, countryGroups, cidrs}";
    for (name, value) in named_entries(node, "regions", "region", shape, diags) {
        let region = region(name, value, groups, diags);
        regions.insert(name.to_owned(), region);
    }
    regions
}

fn region(name: &str, node: &Node, groups: &PolicyGroups, diags: &mut Vec<Diagnostic>) -> Option<Region> {
    let label = format!("region \"{name}\"");
    let ctx = format!("in {label} of spec.regions");
    let keys = ["countries", "countryGroups", "cidrs"];
    let f = fields(node, &keys, &label, &ctx, diags)?;
    if keys.iter().all(|k| f.get(k).is_none()) {
        diags.push(node.error(format!(
            "{label} in spec.regions needs at least one of \"countries\", \"countryGroups\", \"cidrs\""
        )));
        return None;
    }
    let before = diags.len();
    let mut countries = match f.get("countries") {
        None => Vec::new(),
        Some(list) => country_list(list, "countries", &ctx, diags).unwrap_or_default(),
    };
    if let Some(list) = f.get("countryGroups") {
        if let Some((_, members)) = rule_groups(list, groups, "countryGroups", &ctx, diags) {
            countries.extend(members);
        }
    }
    let cidrs = match f.get("cidrs") {
        None => Vec::new(),
        Some(list) => named_cidr_list(list, "cidrs", &ctx, diags).unwrap_or_default(),
    };
    if diags.len() != before {
        return None;
    }
    countries.sort_unstable();
    countries.dedup();
    let mut cidrs: Vec<IpNet> = cidrs;
    cidrs.sort_unstable();
    cidrs.dedup();
    Some(Region { countries, cidrs })
}

/// `spec.crossBorder`: `require` (only `wireguard`) and `homeRegion` (a region of
/// `spec.regions`), both required. Returns the home region's name.
fn home_region(
    node: &Node,
    regions: &BTreeMap<String, Option<Region>>,
    diags: &mut Vec<Diagnostic>,
) -> Option<String> {
    let ctx = "in spec.crossBorder";
    let f = fields(node, &["require", "homeRegion"], "\"crossBorder\" in spec", ctx, diags)?;
    let require =
        f.require("require", ctx, diags).and_then(|r| choice(r, "require", ctx, &["wireguard"], diags));
    let home = f.require("homeRegion", ctx, diags)?;
    let name = string(home, &format!("\"homeRegion\" {ctx}"), diags)?;
    if !regions.contains_key(name) {
        let defined = if regions.is_empty() {
            "no regions are defined; define it in spec.regions".to_owned()
        } else {
            format!("defined regions: {}", regions.keys().cloned().collect::<Vec<_>>().join(", "))
        };
        diags.push(home.error(format!("unknown region \"{name}\" for \"homeRegion\" {ctx} ({defined})")));
        return None;
    }
    require?;
    Some(name.to_owned())
}
