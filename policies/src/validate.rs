//! Validation of a spanned YAML tree into a [`Policy`], collecting every diagnostic.

use std::collections::HashMap;

use crate::countries::CountryCode;
use crate::diagnostic::Diagnostic;
use crate::fields::{choice, fields, peek_string, sequence, string};
use crate::model::{Action, Exfiltration, Mode, Policy, RawSockets, Rule};
use crate::validate_encryption::{encryption, Encryption};
use crate::validate_exfil::exfiltration;
use crate::validate_geo::{country_list, policy_groups, rule_groups, PolicyGroups};
use crate::values;
use crate::yaml_tree::Node;

/// The only accepted `apiVersion`.
pub const API_VERSION: &str = "ringfence.dev/v1";
/// The only accepted `kind`.
pub const KIND: &str = "EgressPolicy";

/// Validates the document root (`None` = empty document); `diags` holds problems found earlier.
pub(crate) fn validate(root: Option<&Node>, mut diags: Vec<Diagnostic>) -> Result<Policy, Vec<Diagnostic>> {
    let policy = match root {
        None => {
            diags.push(Diagnostic::new(
                1,
                1,
                format!("empty document; expected an {KIND} (apiVersion: {API_VERSION})"),
            ));
            None
        }
        Some(root) => document(root, &mut diags),
    };
    match policy {
        Some(policy) if diags.is_empty() => Ok(policy),
        _ => {
            diags.sort_by_key(|d| (d.line, d.column));
            Err(diags)
        }
    }
}

fn document(root: &Node, diags: &mut Vec<Diagnostic>) -> Option<Policy> {
    let ctx = "at top level";
    let f = fields(root, &["apiVersion", "kind", "metadata", "spec"], "the policy document", ctx, diags)?;
    if let Some(v) = f.require("apiVersion", ctx, diags) {
        if let Some(text) = string(v, "\"apiVersion\"", diags) {
            if text != API_VERSION {
                diags
                    .push(v.error(format!("unsupported apiVersion \"{text}\" (expected \"{API_VERSION}\")")));
            }
        }
    }
    if let Some(v) = f.require("kind", ctx, diags) {
        if let Some(text) = string(v, "\"kind\"", diags) {
            if text != KIND {
                diags.push(v.error(format!("unsupported kind \"{text}\" (expected \"{KIND}\")")));
            }
        }
    }
    let name = f.require("metadata", ctx, diags).and_then(|m| metadata(m, diags));
    let spec = f.require("spec", ctx, diags).and_then(|s| spec(s, diags));
    let Spec { mode, default_action, rules, unknown_country, encryption, exfiltration, raw_sockets } = spec?;
    let Encryption { peers, regions, cross_border } = encryption;
    Some(Policy {
        name: name?,
        mode,
        default_action,
        rules,
        unknown_country,
        peers,
        regions,
        cross_border,
        exfiltration,
        raw_sockets,
    })
}

fn metadata(node: &Node, diags: &mut Vec<Diagnostic>) -> Option<String> {
    let ctx = "in metadata";
    let f = fields(node, &["name"], "metadata", ctx, diags)?;
    let value = f.require("name", ctx, diags)?;
    let name = string(value, "\"name\" in metadata", diags)?;
    let valid = (1..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !valid {
        diags.push(value.error(format!(
            "invalid policy name \"{name}\": use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit"
        )));
        return None;
    }
    Some(name.to_owned())
}

fn action(node: &Node, field: &str, context: &str, diags: &mut Vec<Diagnostic>) -> Option<Action> {
    choice(node, field, context, &["allow", "deny"], diags).map(|c| match c {
        "allow" => Action::Allow,
        _ => Action::Deny,
    })
}

/// The validated `spec`.
struct Spec {
    mode: Mode,
    default_action: Action,
    rules: Vec<Rule>,
    unknown_country: Option<Action>,
    encryption: Encryption,
    exfiltration: Option<Exfiltration>,
    raw_sockets: RawSockets,
}

fn spec(node: &Node, diags: &mut Vec<Diagnostic>) -> Option<Spec> {
    let ctx = "in spec";
    let allowed = [
        "mode",
        "defaultAction",
        "unknownCountry",
        "countryGroups",
        "peers",
        "regions",
        "crossBorder",
        "exfiltration",
        "rawSockets",
        "egress",
    ];
    let f = fields(node, &allowed, "spec", ctx, diags)?;
    let mode = match f.get("mode") {
        None => Some(Mode::Enforce),
        Some(m) => choice(m, "mode", ctx, &["enforce", "audit"], diags).map(|c| match c {
            "audit" => Mode::Audit,
            _ => Mode::Enforce,
        }),
    };
    let default_action =
        f.require("defaultAction", ctx, diags).and_then(|a| action(a, "defaultAction", ctx, diags));
    let unknown_country = match f.get("unknownCountry") {
        None => Some(None),
        Some(u) => action(u, "unknownCountry", ctx, diags).map(Some),
    };
    let raw_sockets = match f.get("rawSockets") {
        None => Some(RawSockets::Deny),
        Some(r) => choice(r, "rawSockets", ctx, &["deny", "policy"], diags).map(|c| match c {
            "policy" => RawSockets::Policy,
            _ => RawSockets::Deny,
        }),
    };
    let groups = f.get("countryGroups").map(|g| policy_groups(g, diags)).unwrap_or_default();
    let rules = match f.get("egress") {
        None => Some(Vec::new()),
        Some(e) => egress(e, &groups, diags),
    };
    let encryption = encryption(f.get("peers"), f.get("regions"), f.get("crossBorder"), &groups, diags);
    let exfiltration = match f.get("exfiltration") {
        None => Some(None),
        Some(x) => exfiltration(x, &groups, diags).map(Some),
    };
    Some(Spec {
        mode: mode?,
        default_action: default_action?,
        rules: rules?,
        unknown_country: unknown_country?,
        encryption: encryption?,
        exfiltration: exfiltration?,
        raw_sockets: raw_sockets?,
    })
}

fn egress(node: &Node, groups: &PolicyGroups, diags: &mut Vec<Diagnostic>) -> Option<Vec<Rule>> {
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
        crate::yaml_tree::NodeKind::Mapping(entries) => {
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
    cidrs: Vec<ipnet::IpNet>,
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
        Some(list) => cidr_list(list, ctx, diags),
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

fn cidr_list(list: &Node, ctx: &str, diags: &mut Vec<Diagnostic>) -> Option<Vec<ipnet::IpNet>> {
    named_cidr_list(list, "to.cidrs", ctx, diags)
}

/// A non-empty sequence of CIDRs; `what` names the field in messages (e.g. `"peers.cidrs"`).
pub(crate) fn named_cidr_list(
    list: &Node,
    what: &str,
    ctx: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<Vec<ipnet::IpNet>> {
    let items = sequence(list, &format!("\"{what}\" {ctx}"), diags)?;
    if items.is_empty() {
        diags.push(list.error(format!("\"{what}\" {ctx} must not be empty")));
        return None;
    }
    let before = diags.len();
    let cidrs: Vec<_> = items.iter().filter_map(|c| values::cidr(c, ctx, diags)).collect();
    (diags.len() == before).then_some(cidrs)
}
