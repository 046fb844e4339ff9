//! Validation of the geo-IP parts of a policy: country codes, `spec.countryGroups`, and the
//! resolution of group names in rules (policy groups first, then the shipped groups).

use std::collections::BTreeMap;

use crate::countries::{parse_country, CountryCode};
use crate::diagnostic::Diagnostic;
use crate::fields::{sequence, string};
use crate::groups::shipped_groups;
use crate::yaml_tree::{Node, NodeKind};

/// Groups defined in `spec.countryGroups`. A group whose members had errors maps to `None`, so
/// rules naming it are not reported a second time as naming an unknown group.
pub(crate) type PolicyGroups = BTreeMap<String, Option<Vec<CountryCode>>>;

/// Common mistakes: non-ISO codes people reach for, with the ISO code meant.
const ALIASES: [(&str, &str); 2] = [("UK", "GB"), ("EL", "GR")];

/// One country code. Reports lowercase input and codes that are not assigned.
pub(crate) fn country(node: &Node, context: &str, diags: &mut Vec<Diagnostic>) -> Option<CountryCode> {
    let text = string(node, &format!("a country code {context}"), diags)?;
    if let Some(code) = parse_country(text) {
        return Some(code);
    }
    let upper = text.to_ascii_uppercase();
    let message = if upper != text && parse_country(&upper).is_some() {
        format!(
            "invalid country code \"{text}\" {context}: country codes must be uppercase ISO 3166-1 alpha-2 codes; did you mean \"{upper}\"?"
        )
    } else if let Some((_, iso)) = ALIASES.iter().find(|(alias, _)| *alias == upper) {
        format!(
            "unknown country code \"{text}\" {context}: not an officially assigned ISO 3166-1 alpha-2 code; did you mean \"{iso}\"?"
        )
    } else {
        format!(
            "unknown country code \"{text}\" {context}: not an officially assigned ISO 3166-1 alpha-2 code (two uppercase letters, e.g. DE, US, JP)"
        )
    };
    diags.push(node.error(message));
    None
}

/// A non-empty sequence of country codes (`what` names the field, e.g. `"to.countries"`).
/// Duplicates are accepted and removed; the result is sorted.
pub(crate) fn country_list(
    node: &Node,
    what: &str,
    context: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<Vec<CountryCode>> {
    let items = sequence(node, &format!("\"{what}\" {context}"), diags)?;
    if items.is_empty() {
        diags.push(node.error(format!("\"{what}\" {context} must not be empty")));
        return None;
    }
    let before = diags.len();
    let mut codes: Vec<CountryCode> = items.iter().filter_map(|c| country(c, context, diags)).collect();
    codes.sort_unstable();
    codes.dedup();
    (diags.len() == before).then_some(codes)
}

/// True for a valid group name: 1-63 of `a-z`, `0-9`, `-`, starting and ending with a letter
/// or digit (a DNS label).
pub(crate) fn valid_group_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Reports an invalid group name at `node`.
pub(crate) fn check_group_name(node: &Node, name: &str, diags: &mut Vec<Diagnostic>) -> bool {
    check_name(node, "country group", name, diags)
}

/// Reports an invalid name of a `kind` (e.g. "region") at `node`.
fn check_name(node: &Node, kind: &str, name: &str, diags: &mut Vec<Diagnostic>) -> bool {
    let valid = valid_group_name(name);
    if !valid {
        diags.push(node.error(format!(
            "invalid {kind} name \"{name}\": use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit"
        )));
    }
    valid
}

/// The entries of `spec.<field>`, a mapping of named items of a `kind` (country groups,
/// regions; `shape` describes one entry for the error message): keys must be strings, unique
/// and valid names. Every problem is reported; the good entries come back in order.
pub(crate) fn named_entries<'a>(
    node: &'a Node,
    field: &str,
    kind: &str,
    shape: &str,
    diags: &mut Vec<Diagnostic>,
) -> Vec<(&'a str, &'a Node)> {
    let mut named: Vec<(&str, &Node)> = Vec::new();
    let NodeKind::Mapping(entries) = &node.kind else {
        diags.push(node.error(format!(
            "expected a mapping for \"{field}\" in spec ({shape}), found {}",
            node.describe()
        )));
        return named;
    };
    for (key, value) in entries {
        let Some(name) = key.as_str() else {
            diags.push(key.error(format!("{kind} names in spec.{field} must be strings")));
            continue;
        };
        if named.iter().any(|(n, _)| *n == name) {
            diags.push(key.error(format!("duplicate {kind} \"{name}\" in spec.{field}")));
            continue;
        }
        if check_name(key, kind, name, diags) {
            named.push((name, value));
        }
    }
    named
}

/// `spec.countryGroups`: a mapping from group name to a non-empty list of country codes.
pub(crate) fn policy_groups(node: &Node, diags: &mut Vec<Diagnostic>) -> PolicyGroups {
    let mut groups = PolicyGroups::new();
    for (name, value) in
        named_entries(node, "countryGroups", "country group", "group name: [country codes]", diags)
    {
        let codes = country_list(value, name, "in spec.countryGroups", diags);
        groups.insert(name.to_owned(), codes);
    }
    groups
}

/// The members of the groups named in a rule's `to.countryGroups`, checked against the policy's
/// groups (which replace shipped groups of the same name) and the shipped groups. Returns the
/// names (deduplicated, in the order given) and the members; `None` after reporting.
/// `what` names the field in messages (e.g. `"to.countryGroups"`).
pub(crate) fn rule_groups(
    node: &Node,
    groups: &PolicyGroups,
    what: &str,
    context: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<(Vec<String>, Vec<CountryCode>)> {
    let items = sequence(node, &format!("\"{what}\" {context}"), diags)?;
    if items.is_empty() {
        diags.push(node.error(format!("\"{what}\" {context} must not be empty")));
        return None;
    }
    let (mut names, mut members, mut ok) = (Vec::new(), Vec::new(), true);
    for item in items {
        let Some(name) = string(item, &format!("a country group name {context}"), diags) else {
            ok = false;
            continue;
        };
        match groups.get(name) {
            Some(Some(codes)) => members.extend_from_slice(codes),
            Some(None) => ok = false, // its definition was already reported
            None => match shipped_groups().iter().find(|g| g.name == name) {
                Some(group) => members.extend_from_slice(&group.countries),
                None => {
                    diags.push(item.error(format!(
                        "unknown country group \"{name}\" {context} (known groups: {}; define more in spec.countryGroups)",
                        known_groups(groups).join(", ")
                    )));
                    ok = false;
                    continue;
                }
            },
        }
        if !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
    }
    ok.then_some((names, members))
}

/// Names of every group a rule can use, sorted.
fn known_groups(groups: &PolicyGroups) -> Vec<String> {
    let mut names: Vec<String> = groups.keys().cloned().collect();
    names.extend(shipped_groups().iter().map(|g| g.name.clone()));
    names.sort_unstable();
    names.dedup();
    names
}
