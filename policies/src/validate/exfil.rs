//! Validation of `spec.exfiltration`: approved sinks, the bulk and checkpoint rules, the action
//! and how long a block lasts.

use super::budget;
use super::codes::country_list;
use super::country_groups::{rule_groups, PolicyGroups};
use super::dns::fqdn_list;
use super::values::named_cidr_list;
use crate::diagnostic::Diagnostic;
use crate::fields::{boolean, choice, fields, non_empty_sequence, string};
use crate::model::{ApprovedSinks, Bulk, Checkpoints, ExfilAction, Exfiltration};
use crate::quantities::{format_duration, format_percent, parse_bytes, parse_duration, parse_percent};
use crate::yaml_tree::Node;

/// Validates `spec.exfiltration` (`groups`: the policy's `spec.countryGroups`). `None` after
/// reporting a problem; every problem in the section is reported.
pub(crate) fn exfiltration(
    node: &Node,
    groups: &PolicyGroups,
    diags: &mut Vec<Diagnostic>,
) -> Option<Exfiltration> {
    let ctx = "in spec.exfiltration";
    let keys = ["approvedSinks", "bulk", "checkpoints", "action", "blockFor", "budgets", "rateLimit"];
    let f = fields(node, &keys, "\"exfiltration\" in spec", ctx, diags)?;
    let before = diags.len();
    if ["bulk", "checkpoints", "budgets", "rateLimit"].iter().all(|k| f.get(k).is_none()) {
        diags.push(node.error(
            "spec.exfiltration detects nothing: add \"bulk\" (e.g. {bytes: 2GiB, window: 10m}), \"checkpoints\" (e.g. {paths: [/data/checkpoints]}), \"budgets\" (e.g. {perDestination: 1GiB/1h}) and/or \"rateLimit\" (e.g. 10MB/s), or remove the section",
        ));
    }
    let approved = match f.get("approvedSinks") {
        None => Some(ApprovedSinks::default()),
        Some(n) => approved_sinks(n, groups, diags),
    };
    let bulk = f.get("bulk").map(|n| bulk(n, diags));
    let checkpoints = f.get("checkpoints").map(|n| checkpoints(n, diags));
    let budgets = f.get("budgets").map(|n| budget::budgets(n, f.get("checkpoints").is_some(), diags));
    let rate_limit = f.get("rateLimit").map(|n| budget::rate_limit(n, diags));
    let action = match f.get("action") {
        None => Some(ExfilAction::Alert),
        Some(a) => choice(a, "action", ctx, &["alert", "block"], diags).map(|c| match c {
            "block" => ExfilAction::Block,
            _ => ExfilAction::Alert,
        }),
    };
    let block_for = match (f.get("blockFor"), action) {
        (None, _) => Some(Exfiltration::DEFAULT_BLOCK_FOR_SECS),
        (Some(b), Some(ExfilAction::Alert)) => {
            let default = if f.get("action").is_none() { " (the default)" } else { "" };
            diags.push(b.error(format!(
                "\"blockFor\" {ctx} only applies to \"action: block\", and the action is alert{default}; remove \"blockFor\" or set \"action: block\""
            )));
            None
        }
        (Some(b), _) => duration(b, "blockFor", ctx, Exfiltration::MAX_BLOCK_FOR_SECS, diags),
    };
    if diags.len() != before {
        return None;
    }
    Some(Exfiltration {
        approved: approved?,
        bulk: bulk.map_or(Some(None), |b| b.map(Some))?,
        checkpoints: checkpoints.map_or(Some(None), |c| c.map(Some))?,
        action: action?,
        block_for_secs: block_for?,
        budgets: budgets.map_or(Some(None), |b| b.map(Some))?,
        rate_limit: rate_limit.map_or(Some(None), |r| r.map(Some))?,
    })
}

fn approved_sinks(node: &Node, groups: &PolicyGroups, diags: &mut Vec<Diagnostic>) -> Option<ApprovedSinks> {
    let ctx = "in spec.exfiltration.approvedSinks";
    let keys = ["cidrs", "countries", "countryGroups", "peers", "fqdns"];
    let f = fields(node, &keys, "\"approvedSinks\" in spec.exfiltration", ctx, diags)?;
    let before = diags.len();
    let mut cidrs = f.get("cidrs").and_then(|l| named_cidr_list(l, "cidrs", ctx, diags)).unwrap_or_default();
    let mut countries =
        f.get("countries").and_then(|l| country_list(l, "countries", ctx, diags)).unwrap_or_default();
    if let Some(list) = f.get("countryGroups") {
        if let Some((_, members)) = rule_groups(list, groups, "countryGroups", ctx, diags) {
            countries.extend(members);
        }
    }
    let peers = f.get("peers").map_or(Some(false), |p| boolean(p, "peers", ctx, diags));
    let fqdns = f.get("fqdns").map_or(Some(Vec::new()), |l| fqdn_list(l, "fqdns", ctx, diags));
    if diags.len() != before {
        return None;
    }
    cidrs.sort_unstable();
    cidrs.dedup();
    countries.sort_unstable();
    countries.dedup();
    Some(ApprovedSinks { cidrs, countries, peers: peers?, fqdns: fqdns? })
}

fn bulk(node: &Node, diags: &mut Vec<Diagnostic>) -> Option<Bulk> {
    let ctx = "in spec.exfiltration.bulk";
    let f = fields(node, &["bytes", "window"], "\"bulk\" in spec.exfiltration", ctx, diags)?;
    let bytes = f.require("bytes", ctx, diags).and_then(|b| byte_size(b, ctx, diags));
    let window = f
        .require("window", ctx, diags)
        .and_then(|w| duration(w, "window", ctx, Bulk::MAX_WINDOW_SECS, diags));
    Some(Bulk { bytes: bytes?, window_secs: window? })
}

fn checkpoints(node: &Node, diags: &mut Vec<Diagnostic>) -> Option<Checkpoints> {
    let ctx = "in spec.exfiltration.checkpoints";
    let keys = ["paths", "patterns", "tolerance"];
    let f = fields(node, &keys, "\"checkpoints\" in spec.exfiltration", ctx, diags)?;
    let paths = f.require("paths", ctx, diags).and_then(|p| string_list(p, "paths", ctx, "", path, diags));
    let patterns = match f.get("patterns") {
        None => Some(Checkpoints::DEFAULT_PATTERNS.iter().map(|p| (*p).to_owned()).collect()),
        Some(p) => {
            let hint = format!(
                "; omit \"patterns\" to use the defaults ({})",
                Checkpoints::DEFAULT_PATTERNS.join(", ")
            );
            string_list(p, "patterns", ctx, &hint, pattern, diags)
        }
    };
    let tolerance = match f.get("tolerance") {
        None => Some(Checkpoints::DEFAULT_TOLERANCE_BP),
        Some(t) => tolerance(t, ctx, diags),
    };
    Some(Checkpoints { paths: paths?, patterns: patterns?, tolerance_bp: tolerance? })
}

/// A non-empty sequence of strings, each checked (and normalized) by `check(text, ctx)`, which
/// returns the message if it is invalid; duplicates removed, order kept. `empty_hint` follows the message for
/// an empty list.
fn string_list(
    node: &Node,
    what: &str,
    ctx: &str,
    empty_hint: &str,
    check: fn(&str, &str) -> Result<String, String>,
    diags: &mut Vec<Diagnostic>,
) -> Option<Vec<String>> {
    let items = non_empty_sequence(node, what, ctx, empty_hint, diags)?;
    let mut out: Vec<String> = Vec::new();
    let mut ok = true;
    for item in items {
        let Some(text) = string(item, &format!("an entry of \"{what}\" {ctx}"), diags) else {
            ok = false;
            continue;
        };
        match check(text, ctx) {
            Ok(value) if out.contains(&value) => {}
            Ok(value) => out.push(value),
            Err(message) => {
                diags.push(item.error(message));
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

/// A checkpoint directory: absolute; trailing `/` removed.
fn path(text: &str, ctx: &str) -> Result<String, String> {
    if !text.starts_with('/') {
        return Err(format!(
            "checkpoint path \"{text}\" {ctx} is not absolute; use an absolute directory, starting with '/' (e.g. /data/checkpoints)"
        ));
    }
    let trimmed = text.trim_end_matches('/');
    Ok(if trimmed.is_empty() { "/".to_owned() } else { trimmed.to_owned() })
}

/// A file-name glob: not empty, no `/`.
fn pattern(text: &str, ctx: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err(format!(
            "empty checkpoint pattern {ctx}; use a file-name glob such as \"*.safetensors\""
        ));
    }
    if text.contains('/') {
        return Err(format!(
            "checkpoint pattern \"{text}\" {ctx} contains '/': patterns match file names only; put directories in \"paths\""
        ));
    }
    Ok(text.to_owned())
}

/// `bytes`: a byte size above 0.
fn byte_size(node: &Node, ctx: &str, diags: &mut Vec<Diagnostic>) -> Option<u64> {
    let text = string(node, &format!("\"bytes\" {ctx}"), diags)?;
    match parse_bytes(text) {
        Ok(0) => diags.push(node.error(format!("bytes \"{text}\" {ctx} must be greater than 0"))),
        Ok(bytes) => return Some(bytes),
        Err(reason) => diags.push(node.error(format!("invalid bytes \"{text}\" {ctx}: {reason}"))),
    }
    None
}

/// A duration from 1 second to `max_secs`.
fn duration(node: &Node, field: &str, ctx: &str, max_secs: u64, diags: &mut Vec<Diagnostic>) -> Option<u64> {
    let text = string(node, &format!("\"{field}\" {ctx}"), diags)?;
    match parse_duration(text) {
        Ok(0) => diags.push(node.error(format!("{field} \"{text}\" {ctx} must be greater than 0"))),
        Ok(secs) if secs > max_secs => diags.push(node.error(format!(
            "{field} \"{text}\" {ctx} is longer than the maximum of {}",
            format_duration(max_secs)
        ))),
        Ok(secs) => return Some(secs),
        Err(reason) => diags.push(node.error(format!("invalid {field} \"{text}\" {ctx}: {reason}"))),
    }
    None
}

/// `tolerance`: a percentage above 0 and at most the maximum, in basis points.
fn tolerance(node: &Node, ctx: &str, diags: &mut Vec<Diagnostic>) -> Option<u32> {
    let text = string(node, &format!("\"tolerance\" {ctx}"), diags)?;
    let max = Checkpoints::MAX_TOLERANCE_BP;
    match parse_percent(text) {
        Ok(0) => diags.push(node.error(format!("tolerance \"{text}\" {ctx} must be greater than 0%"))),
        Ok(bp) if bp > max => diags.push(
            node.error(format!("tolerance \"{text}\" {ctx} is above the maximum of {}", format_percent(max))),
        ),
        Ok(bp) => return Some(bp),
        Err(reason) => diags.push(node.error(format!("invalid tolerance \"{text}\" {ctx}: {reason}"))),
    }
    None
}
