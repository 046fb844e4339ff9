//! Validation of `spec.egress` and `spec.ingress`: the rules, each with its name, action,
//! destinations (`to`) or sources (`from`, module `targets`), ports and, on egress rules, the
//! encryption requirement.

use std::collections::HashMap;

use super::country_groups::PolicyGroups;
use super::targets::{targets, Direction};
use super::values;
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

/// `spec.egress` or `spec.ingress` (per `dir`): the rules in order (ids from 1), with duplicate
/// names reported; `None` if a rule had a problem. `peers_given`: `spec.peers` is set.
pub(super) fn rules(
    node: &Node,
    dir: Direction,
    groups: &PolicyGroups,
    peers_given: bool,
    diags: &mut Vec<Diagnostic>,
) -> Option<Vec<Rule>> {
    let items = sequence(node, &format!("\"{}\" in spec", dir.field()), diags)?;
    let mut rules = Vec::new();
    let mut names: HashMap<&str, (usize, &Node)> = HashMap::new();
    let mut complete = true;
    for (i, item) in items.iter().enumerate() {
        let id = i + 1;
        if let Some(name_node) = item_name_node(item) {
            if let Some(name) = name_node.as_str() {
                if let Some((first_id, first)) = names.get(name) {
                    diags.push(name_node.error(format!(
                        "duplicate {} name \"{name}\" (also used by {} {first_id} at line {}, column {})",
                        dir.noun(),
                        dir.noun(),
                        first.line,
                        first.column
                    )));
                } else {
                    names.insert(name, (id, name_node));
                }
            }
        }
        match rule(item, id, dir, groups, peers_given, diags) {
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

fn rule(
    node: &Node,
    id: usize,
    dir: Direction,
    groups: &PolicyGroups,
    peers_given: bool,
    diags: &mut Vec<Diagnostic>,
) -> Option<Rule> {
    let noun = dir.noun();
    let label = match peek_string(node, "name") {
        Some(name) if !name.is_empty() => format!("{noun} \"{name}\""),
        Some(_) | None => format!("{noun} #{id}"),
    };
    let ctx = format!("in {label}");
    let allowed = ["name", "action", dir.target(), "ports", "encryption"];
    let f = fields(node, &allowed, &label, &ctx, diags)?;
    let name = f.require("name", &ctx, diags).and_then(|n| string(n, &format!("\"name\" {ctx}"), diags));
    if name == Some("") {
        diags.push(
            f.get("name").expect("name is present").error(format!("{noun} name {ctx} must not be empty")),
        );
    }
    let action = f.require("action", &ctx, diags).and_then(|a| action(a, "action", &ctx, diags));
    let targets = f
        .require(dir.target(), &ctx, diags)
        .and_then(|t| targets(t, dir, &label, groups, peers_given, diags));
    let ports = match f.get("ports") {
        None => Some(Vec::new()),
        Some(p) => sequence(p, &format!("\"ports\" {ctx}"), diags).map(|items| {
            let before = diags.len();
            let ports = values::ports(p, items, &ctx, diags);
            (diags.len() == before).then_some(ports)
        })?,
    };
    let encryption_required = match (f.get("encryption"), dir) {
        (None, _) => Some(false),
        (Some(e), Direction::Ingress) => {
            diags.push(e.error(format!(
                "\"encryption\" is not allowed {ctx}: encryption applies to outgoing traffic; require it in the sender's egress policy (e.g. spec.peers) and remove it here"
            )));
            None
        }
        (Some(e), Direction::Egress) => {
            choice(e, "encryption", &ctx, &["required", "none"], diags).map(|c| c == "required")
        }
    };
    if encryption_required == Some(true) && action == Some(Action::Deny) {
        diags.push(f.get("encryption").expect("encryption is present").error(format!(
            "\"encryption: required\" {ctx} is only valid on allow rules (a deny rule lets no traffic through to encrypt); remove it or use \"encryption: none\""
        )));
        return None;
    }
    let targets = targets?;
    if action == Some(Action::Deny) && !targets.fqdns.is_empty() {
        diags.push(f.get(dir.target()).expect("targets are present").error(format!(
            "\"to.fqdns\" {ctx} is only valid on allow rules: a deny rule by name cannot be enforced safely (a name's addresses are only known from the answers a workload asked for, so an incomplete list would let the others through); deny by CIDR or country, or make the policy default deny and allow the names you need"
        )));
        return None;
    }
    Some(Rule {
        id: u32::try_from(id).ok()?,
        name: name.filter(|n| !n.is_empty())?.to_owned(),
        action: action?,
        cidrs: targets.cidrs,
        countries: targets.countries,
        country_groups: targets.groups,
        fqdns: targets.fqdns,
        ports: ports?,
        encryption_required: encryption_required?,
        peers: targets.peers,
        workloads: targets.workloads,
    })
}
