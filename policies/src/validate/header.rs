//! What every Ringfence document shares: validating a whole document, the `apiVersion` and
//! `kind` header, and the names of policies, country groups and regions (DNS labels), also as
//! keys of a mapping of named entries.

use crate::diagnostic::Diagnostic;
use crate::fields::{string, Fields};
use crate::yaml_tree::{Node, NodeKind};

/// The only accepted `apiVersion`.
pub const API_VERSION: &str = "ringfence.dev/v1";
/// The only accepted `kind` of a policy.
pub const KIND: &str = "EgressPolicy";

/// Validates a document with `document`; `root` `None` is an empty document, reported as not
/// the `expected` one (e.g. `a CountryGroup`). `diags` holds problems found earlier. The value
/// if no problem was found, else every diagnostic, ordered by line and column.
pub(super) fn validate_document<T>(
    root: Option<&Node>,
    mut diags: Vec<Diagnostic>,
    expected: &str,
    document: impl FnOnce(&Node, &mut Vec<Diagnostic>) -> Option<T>,
) -> Result<T, Vec<Diagnostic>> {
    let value = match root {
        None => {
            diags.push(Diagnostic::new(1, 1, format!("empty document; expected {expected}")));
            None
        }
        Some(root) => document(root, &mut diags),
    };
    match value {
        Some(value) if diags.is_empty() => Ok(value),
        _ => {
            diags.sort_by_key(|d| (d.line, d.column));
            Err(diags)
        }
    }
}

/// Checks the `apiVersion` (must be [`API_VERSION`]) and `kind` (must be `kind`) fields of a
/// document, both required; `ctx` says where they are.
pub(super) fn header(f: &Fields<'_>, kind: &str, ctx: &str, diags: &mut Vec<Diagnostic>) {
    for (key, expected) in [("apiVersion", API_VERSION), ("kind", kind)] {
        if let Some(v) = f.require(key, ctx, diags) {
            if let Some(text) = string(v, &format!("\"{key}\""), diags) {
                if text != expected {
                    diags.push(v.error(format!("unsupported {key} \"{text}\" (expected \"{expected}\")")));
                }
            }
        }
    }
}

/// True for a valid name of a policy, group or region: 1-63 of `a-z`, `0-9`, `-`, starting
/// and ending with a letter or digit (a DNS label).
fn valid_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Reports an invalid name of a `kind` (e.g. "region") at `node`; true if the name is valid.
pub(super) fn check_name(node: &Node, kind: &str, name: &str, diags: &mut Vec<Diagnostic>) -> bool {
    let valid = valid_name(name);
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
