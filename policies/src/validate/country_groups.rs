//! Country groups in a policy: the policy's own groups (`spec.countryGroups`), and the
//! resolution of group names in rules, regions and approved sinks (policy groups first, then
//! the shipped groups).

use std::collections::BTreeMap;

use super::codes::country_list;
use super::groups::shipped_groups;
use super::header::named_entries;
use crate::countries::CountryCode;
use crate::diagnostic::Diagnostic;
use crate::fields::{non_empty_sequence, string};
use crate::yaml_tree::Node;

/// Groups defined in `spec.countryGroups`. A group whose members had errors maps to `None`, so
/// rules naming it are not reported a second time as naming an unknown group.
pub(crate) type PolicyGroups = BTreeMap<String, Option<Vec<CountryCode>>>;

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
    let items = non_empty_sequence(node, what, context, "", diags)?;
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
