//! Validation of `spec.exfiltration.budgets` (`perDestination`, `total`, `dns`, `icmp`: each
//! `BYTES/WINDOW` or `RATIOx checkpoint/WINDOW`) and `spec.exfiltration.rateLimit` (`BYTES/s`).

use crate::diagnostic::Diagnostic;
use crate::fields::{fields, string};
use crate::model::{Budget, BudgetAmount, Budgets};
use crate::quantities::{format_duration, parse_bytes, parse_duration};
use crate::yaml_tree::Node;

const BUDGET_EXPECTED: &str =
    "expected BYTES/WINDOW (e.g. 1GiB/1h) or RATIOx checkpoint/WINDOW (e.g. 0.01x checkpoint/24h)";

/// Validates `budgets`; `has_checkpoints`: the section watches checkpoints (a relative budget
/// needs their sizes). `None` after reporting a problem.
pub(super) fn budgets(node: &Node, has_checkpoints: bool, diags: &mut Vec<Diagnostic>) -> Option<Budgets> {
    let ctx = "in spec.exfiltration.budgets";
    let keys = ["perDestination", "total", "dns", "icmp"];
    let f = fields(node, &keys, "\"budgets\" in spec.exfiltration", ctx, diags)?;
    let before = diags.len();
    if f.get("perDestination").is_none() && f.get("total").is_none() {
        diags.push(node.error(format!(
            "spec.exfiltration.budgets sets no transfer budget: add \"perDestination\" and/or \"total\" (e.g. perDestination: 1GiB/1h) {ctx}"
        )));
    }
    let mut one = |key: &str| f.get(key).and_then(|n| budget(n, key, ctx, has_checkpoints, diags));
    let per_destination = one("perDestination");
    let total = one("total");
    let dns = one("dns");
    let icmp = one("icmp");
    if diags.len() != before {
        return None;
    }
    Some(Budgets {
        per_destination,
        total,
        dns: dns.unwrap_or(Budgets::DEFAULT_DNS),
        icmp: icmp.unwrap_or(Budgets::DEFAULT_ICMP),
    })
}

fn budget(
    node: &Node,
    key: &str,
    ctx: &str,
    has_checkpoints: bool,
    diags: &mut Vec<Diagnostic>,
) -> Option<Budget> {
    let text = string(node, &format!("\"{key}\" {ctx}"), diags)?;
    match parse_budget(text) {
        Ok(b) if matches!(b.amount, BudgetAmount::CheckpointPpm(_)) && !has_checkpoints => {
            diags.push(node.error(format!(
                "{key} \"{text}\" {ctx} is relative to the checkpoint size, but spec.exfiltration has no \"checkpoints\" to measure it; add checkpoints: {{paths: [...]}} or give bytes (e.g. 1GiB/24h)"
            )));
            None
        }
        Ok(b) => Some(b),
        Err(reason) => {
            diags.push(node.error(format!("invalid {key} \"{text}\" {ctx}: {reason}")));
            None
        }
    }
}

/// Parses `BYTES/WINDOW` or `RATIOx checkpoint/WINDOW`.
pub(crate) fn parse_budget(text: &str) -> Result<Budget, String> {
    let Some((amount, window)) = text.trim().rsplit_once('/') else {
        return Err(BUDGET_EXPECTED.to_owned());
    };
    let window_secs = match parse_duration(window) {
        Ok(0) => return Err("the window must be longer than 0s".to_owned()),
        Ok(s) if s > Budget::MAX_WINDOW_SECS => {
            return Err(format!(
                "the window is longer than the maximum of {}",
                format_duration(Budget::MAX_WINDOW_SECS)
            ))
        }
        Ok(s) => s,
        Err(reason) => return Err(format!("window: {reason}")),
    };
    let amount = amount.trim();
    let amount = match amount.strip_suffix("checkpoint").map(str::trim_end) {
        Some(ratio) => BudgetAmount::CheckpointPpm(parse_ratio(ratio)?),
        None => match parse_bytes(amount) {
            Ok(0) => return Err("the budget must be greater than 0 bytes".to_owned()),
            Ok(b) => BudgetAmount::Bytes(b),
            Err(reason) => return Err(format!("{reason}; or {BUDGET_EXPECTED}")),
        },
    };
    Ok(Budget { amount, window_secs })
}

/// `0.01x`: a share of the checkpoint above 0 and at most 1, in parts per million.
fn parse_ratio(text: &str) -> Result<u32, String> {
    let expected = "expected a ratio such as 0.01x (above 0, at most 1x, at most 6 decimal places) before \"checkpoint\"";
    let Some(number) = text.strip_suffix('x') else { return Err(expected.to_owned()) };
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    let digits_ok = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !digits_ok(int) || !digits_ok(frac) || frac.len() > 6 || int.len() > 7 {
        return Err(expected.to_owned());
    }
    let ppm: u64 = format!("{int}{frac:0<6}").parse().map_err(|_| expected.to_owned())?;
    match ppm {
        0 => Err(format!("the ratio must be above 0 ({expected})")),
        p if p > 1_000_000 => Err(format!("the ratio must be at most 1x ({expected})")),
        p => Ok(p as u32),
    }
}

/// Validates `rateLimit`: `BYTES/s` above 0.
pub(super) fn rate_limit(node: &Node, diags: &mut Vec<Diagnostic>) -> Option<u64> {
    let ctx = "in spec.exfiltration";
    let text = string(node, &format!("\"rateLimit\" {ctx}"), diags)?;
    let parsed = match text.trim().strip_suffix("/s") {
        None => Err("expected BYTES/s, e.g. 10MB/s".to_owned()),
        Some(bytes) => match parse_bytes(bytes) {
            Ok(0) => Err("the rate must be greater than 0".to_owned()),
            other => other,
        },
    };
    match parsed {
        Ok(rate) => Some(rate),
        Err(reason) => {
            diags.push(node.error(format!("invalid rateLimit \"{text}\" {ctx}: {reason}")));
            None
        }
    }
}
