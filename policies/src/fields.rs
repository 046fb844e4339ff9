//! Helpers for validating YAML mappings and scalars while collecting every diagnostic.

use crate::diagnostic::Diagnostic;
use crate::yaml_tree::{Node, NodeKind};

/// The entries of a validated mapping: string keys from an allowed set, first occurrence only.
pub(crate) struct Fields<'a> {
    node: &'a Node,
    entries: Vec<(&'a str, &'a Node)>,
}

/// Checks that `node` (described as `what`, e.g. `rule "x"`) is a mapping whose keys are strings
/// from `allowed`. Unknown, duplicate and non-string keys are reported with `context` (e.g.
/// `in rule "x"`). Returns `None` (after reporting) if `node` is not a mapping.
pub(crate) fn fields<'a>(
    node: &'a Node,
    allowed: &[&str],
    what: &str,
    context: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<Fields<'a>> {
    let NodeKind::Mapping(entries) = &node.kind else {
        diags.push(node.error(format!("expected a mapping for {what}, found {}", node.describe())));
        return None;
    };
    let mut fields = Fields { node, entries: Vec::new() };
    for (key, value) in entries {
        let name = match &key.kind {
            NodeKind::Scalar { value, .. } => value.as_str(),
            _ => {
                diags.push(key.error(format!("mapping keys must be strings {context}")));
                continue;
            }
        };
        if let Some((_, first)) = fields.entries.iter().find(|(k, _)| *k == name) {
            let (line, column) = first_key_position(entries, first);
            diags.push(key.error(format!(
                "duplicate field \"{name}\" {context} (first given at line {line}, column {column})"
            )));
            continue;
        }
        if !allowed.contains(&name) {
            diags.push(key.error(format!(
                "unknown field \"{name}\" {context} (expected one of: {})",
                allowed.join(", ")
            )));
            continue;
        }
        fields.entries.push((name, value));
    }
    Some(fields)
}

fn first_key_position(entries: &[(Node, Node)], value: &Node) -> (usize, usize) {
    entries
        .iter()
        .find(|(_, v)| std::ptr::eq(v, value))
        .map_or((value.line, value.column), |(k, _)| (k.line, k.column))
}

impl<'a> Fields<'a> {
    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&'a Node> {
        self.entries.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    /// The value of `key`; reports `missing required field` at the mapping if absent.
    pub fn require(&self, key: &str, context: &str, diags: &mut Vec<Diagnostic>) -> Option<&'a Node> {
        let value = self.get(key);
        if value.is_none() {
            diags.push(self.node.error(format!("missing required field \"{key}\" {context}")));
        }
        value
    }
}

/// The text of a non-null scalar; otherwise reports `expected a string for WHAT`.
pub(crate) fn string<'a>(node: &'a Node, what: &str, diags: &mut Vec<Diagnostic>) -> Option<&'a str> {
    let text = node.as_str();
    if text.is_none() {
        diags.push(node.error(format!("expected a string for {what}, found {}", node.describe())));
    }
    text
}

/// One of `choices` (exact, case-sensitive) for the field `field`; otherwise reports the valid
/// choices, e.g. `invalid protocol "tcpp" in port entry 1 of rule "x" (expected one of: ...)`.
pub(crate) fn choice<'a>(
    node: &Node,
    field: &str,
    context: &str,
    choices: &[&'a str],
    diags: &mut Vec<Diagnostic>,
) -> Option<&'a str> {
    let text = string(node, &format!("\"{field}\" {context}"), diags)?;
    let found = choices.iter().copied().find(|c| *c == text);
    if found.is_none() {
        diags.push(node.error(format!(
            "invalid {field} \"{text}\" {context} (expected one of: {})",
            choices.join(", ")
        )));
    }
    found
}

/// A boolean (`true`/`false`, also `True`, `TRUE`, `False`, `FALSE`) for the field `field`;
/// otherwise reports e.g. `invalid peers "yes" in spec.exfiltration.approvedSinks (expected
/// true or false)`.
pub(crate) fn boolean(node: &Node, field: &str, context: &str, diags: &mut Vec<Diagnostic>) -> Option<bool> {
    let text = string(node, &format!("\"{field}\" {context}"), diags)?;
    match text {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => {
            diags.push(node.error(format!("invalid {field} \"{text}\" {context} (expected true or false)")));
            None
        }
    }
}

/// The elements of a sequence; otherwise reports `expected a sequence for WHAT`.
pub(crate) fn sequence<'a>(node: &'a Node, what: &str, diags: &mut Vec<Diagnostic>) -> Option<&'a [Node]> {
    match &node.kind {
        NodeKind::Sequence(items) => Some(items),
        _ => {
            diags.push(node.error(format!("expected a sequence for {what}, found {}", node.describe())));
            None
        }
    }
}

/// The elements of a non-empty sequence `"WHAT" CONTEXT` (e.g. `"to.countries" in rule "x"`);
/// otherwise reports that it is not a sequence, or that it `must not be empty` followed by
/// `empty_hint`.
pub(crate) fn non_empty_sequence<'a>(
    node: &'a Node,
    what: &str,
    context: &str,
    empty_hint: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<&'a [Node]> {
    let items = sequence(node, &format!("\"{what}\" {context}"), diags)?;
    if items.is_empty() {
        diags.push(node.error(format!("\"{what}\" {context} must not be empty{empty_hint}")));
        return None;
    }
    Some(items)
}

/// The string value of `key` in `node` if `node` is a mapping with such a scalar; no diagnostics.
pub(crate) fn peek_string<'a>(node: &'a Node, key: &str) -> Option<&'a str> {
    let NodeKind::Mapping(entries) = &node.kind else { return None };
    entries.iter().find(|(k, _)| k.as_str() == Some(key)).and_then(|(_, v)| v.as_str())
}
