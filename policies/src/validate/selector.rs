//! Validation of workload selectors (`{ matchLabels: { key: value } }`): `spec.workloadSelector`
//! and an ingress rule's `from.workloads`.

use std::collections::BTreeMap;

use crate::diagnostic::Diagnostic;
use crate::fields::{fields, string};
use crate::model::Selector;
use crate::yaml_tree::{Node, NodeKind};

/// The longest label key.
const MAX_KEY_LEN: usize = 253;
/// The longest label value.
const MAX_VALUE_LEN: usize = 63;

fn valid_key(key: &str) -> bool {
    (1..=MAX_KEY_LEN).contains(&key.len())
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'/' | b'-'))
}

fn valid_value(value: &str) -> bool {
    value.len() <= MAX_VALUE_LEN
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A selector in `what` (e.g. `spec.workloadSelector`, `"from.workloads" in rule "x"`);
/// `empty_hint` follows the message for an empty `matchLabels`. Every problem is reported;
/// `None` after reporting one.
pub(super) fn selector(
    node: &Node,
    what: &str,
    empty_hint: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<Selector> {
    let ctx = format!("in {what}");
    let f = fields(node, &["matchLabels"], what, &ctx, diags)?;
    let labels = f.require("matchLabels", &ctx, diags)?;
    let NodeKind::Mapping(entries) = &labels.kind else {
        diags.push(labels.error(format!(
            "expected a mapping of label keys to values for \"matchLabels\" {ctx}, found {}",
            labels.describe()
        )));
        return None;
    };
    if entries.is_empty() {
        diags.push(labels.error(format!("\"matchLabels\" {ctx} must not be empty; {empty_hint}")));
        return None;
    }
    let before = diags.len();
    let mut match_labels = BTreeMap::new();
    for (key_node, value_node) in entries {
        let Some(key) = string(key_node, &format!("a label key {ctx}"), diags) else { continue };
        if !valid_key(key) {
            diags.push(key_node.error(format!(
                "invalid label key \"{key}\" {ctx}: use 1-{MAX_KEY_LEN} letters, digits and '.', '_', '/', '-'"
            )));
            continue;
        }
        if match_labels.contains_key(key) {
            diags.push(key_node.error(format!("duplicate label key \"{key}\" {ctx}")));
            continue;
        }
        let value = match &value_node.kind {
            // An explicitly quoted "" is an empty value; a bare null is not a value.
            NodeKind::Scalar { value, plain: false } => Some(value.as_str()),
            _ => string(value_node, &format!("the value of label \"{key}\" {ctx}"), diags),
        };
        let Some(value) = value else { continue };
        if !valid_value(value) {
            diags.push(value_node.error(format!(
                "invalid value \"{value}\" of label \"{key}\" {ctx}: use at most {MAX_VALUE_LEN} letters, digits and '.', '_', '-' (or \"\")"
            )));
            continue;
        }
        match_labels.insert(key.to_owned(), value.to_owned());
    }
    (diags.len() == before).then_some(Selector { match_labels })
}
