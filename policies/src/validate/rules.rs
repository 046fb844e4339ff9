//! Validation of `spec.egress`: the rules, each with its name, action, destinations (`to`),
//! ports and encryption requirement.

use std::collections::HashMap;

use ipnet::IpNet;

use super::codes::country_list;
use super::country_groups::{rule_groups, PolicyGroups};
use super::values::{self, named_cidr_list};
use crate::countries::CountryCode;
use crate::diagnostic::Diagnostic;
use crate::fields::{choice, fields, peek_string, sequence, string};
use crate::model::{Action, Rule};
use crate::yaml_tree::{Node, NodeKind};

/// An action (`allow` or `deny`) in `field`, e.g. a rule's `action` or `spec.defaultAction`.
pub(super) fn action(node: &Node, field: &str, context: &str, diags: &mut Vec<Diagnostic>) -> Option<Action> {
    choice(node, field, context, &["allow", "deny"], diags).map(|c| match c {
        "allow" => Action::Allow,
        _ => Action::Deny,
    })
}

/// `spec.egress`: the rules in order (ids from 1), with duplicate names reported; `None` if a
/// rule had a problem.
pub(super) fn egress(node: &Node, groups: &PolicyGroups, diags: &mut Vec<Diagnostic>) -> Option<Vec<Rule>> {
    let items = sequence(node, "\"egress\" in spec", diags)?;
    let mut rules = Vec::new();
    let mut names: HashMap<&str, (usize, &Node)> = HashMap::new();
    let mut complete = true;
    for (i, item) in items.iter().enumerate() {
        let id = i + 1;
        if let Some(name_node) = item_name_node(item) {
            if let Some(name) = name_node.as_str() {
                if let Some((first_id, first)) = names.get(name) {
                    diags.push(name_node.error(format!(
                        "duplicate rule name \"{name}\" (also used by rule {first_id} at line {}, column {})",
                        first.line, first.column
                    )));
                } else {
                    names.insert(name, (id, name_node));
                }
            }
        }
        match rule(item, id, groups, diags) {
            Some(r) => rules.push(r),
            None => complete = false,
        }
    }
    complete.then_some(rules)
}

fn item_name_node(item: &Node) -> Option<&Node> {
    match &item.kind {
        NodeKind::Mapping(entries) => {
            entries.iter().find(|(k, _)| k.as_str() == Some("name")).map(|(_, v)| v)
        }
        _ => None,
    }
}

fn rule(node: &Node, id: usize, groups: &PolicyGroups, diags: &mut Vec<Diagnostic>) -> Option<Rule> {
    let label = match peek_string(node, "name") {
        Some(name) if !name.is_empty() => format!("rule \"{name}\""),
        Some(_) | None => format!("rule #{id}"),
    };
    let ctx = format!("in {label}");
    let f = fields(node, &["name", "action", "to", "ports", "encryption"], &label, &ctx, diags)?;
    let name = f.require("name", &ctx, diags).and_then(|n| string(n, &format!("\"name\" {ctx}"), diags));
    if name == Some("") {
        diags.push(
            f.get("name").expect("name is present").error(format!("rule name {ctx} must not be empty")),
        );
    }
    let action = f.require("action", &ctx, diags).and_then(|a| action(a, "action", &ctx, diags));
    let to = f.require("to", &ctx, diags).and_then(|to| destinations(to, &label, &ctx, groups, diags));
    let ports = match f.get("ports") {
        None => Some(Vec::new()),
        Some(p) => sequence(p, &format!("\"ports\" {ctx}"), diags).map(|items| {
            let before = diags.len();
            let ports = values::ports(p, items, &ctx, diags);
            (diags.len() == before).then_some(ports)
        })?,
    };
    let encryption_required = match f.get("encryption") {
        None => Some(false),
        Some(e) => choice(e, "encryption", &ctx, &["required", "none"], diags).map(|c| c == "required"),
    };
    if encryption_required == Some(true) && action == Some(Action::Deny) {
        diags.push(f.get("encryption").expect("encryption is present").error(format!(
            "\"encryption: required\" {ctx} is only valid on allow rules (a deny rule lets no traffic through to encrypt); remove it or use \"encryption: none\""
        )));
        return None;
    }
    let to = to?;
    Some(Rule {
        id: u32::try_from(id).ok()?,
        name: name.filter(|n| !n.is_empty())?.to_owned(),
        action: action?,
        cidrs: to.cidrs,
        countries: to.countries,
        country_groups: to.groups,
        ports: ports?,
        encryption_required: encryption_required?,
    })
}

/// A rule's validated `to`.
struct Targets {
    cidrs: Vec<IpNet>,
    /// `countries` plus the members of `countryGroups`, sorted, deduplicated.
    countries: Vec<CountryCode>,
    groups: Vec<String>,
}

fn destinations(
    node: &Node,
    label: &str,
    ctx: &str,
    groups: &PolicyGroups,
    diags: &mut Vec<Diagnostic>,
) -> Option<Targets> {
    let keys = ["cidrs", "countries", "countryGroups"];
    let f = fields(node, &keys, &format!("\"to\" in {label}"), &format!("in \"to\" of {label}"), diags)?;
    if keys.iter().all(|k| f.get(k).is_none()) {
        diags.push(node.error(format!(
            "\"to\" in {label} needs at least one of \"cidrs\", \"countries\", \"countryGroups\""
        )));
        return None;
    }
    let cidrs = match f.get("cidrs") {
        None => Some(Vec::new()),
        Some(list) => named_cidr_list(list, "to.cidrs", ctx, diags),
    };
    let countries = match f.get("countries") {
        None => Some(Vec::new()),
        Some(list) => country_list(list, "to.countries", ctx, diags),
    };
    let (names, members) = match f.get("countryGroups") {
        None => (Vec::new(), Vec::new()),
        Some(list) => rule_groups(list, groups, "to.countryGroups", ctx, diags)?,
    };
    let mut countries = countries?;
    countries.extend(members);
    countries.sort_unstable();
    countries.dedup();
    Some(Targets { cidrs: cidrs?, countries, groups: names })
}
