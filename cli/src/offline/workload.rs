//! `ringfence policy explain --workload k=v,... FILE...`: which of the policy files governs a
//! workload with these labels, and why. The same choice the agent makes: the workload policy
//! whose `spec.workloadSelector` matches (an error naming both when two do), else the node
//! default (the file without a workloadSelector). Offline: no control plane involved.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ringfence_policy::{policy_for, Policy};
use serde_json::{json, Value};

use super::policy::load;
use crate::client::EXIT_USAGE;

/// Parses `key=value,key2=value2` (a value may be empty; a key may not).
pub fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match item.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                labels.insert(k.trim().to_owned(), v.trim().to_owned());
            }
            _ => return Err(format!("invalid label {item:?}: expected KEY=VALUE, e.g. job=train,team=ml")),
        }
    }
    Ok(labels)
}

/// Why `policy`'s workload selector does not match `labels` (empty: it matches).
fn mismatches(policy: &Policy, labels: &BTreeMap<String, String>) -> Vec<String> {
    let Some(selector) = &policy.workload_selector else { return Vec::new() };
    selector
        .match_labels
        .iter()
        .filter_map(|(k, v)| match labels.get(k) {
            Some(have) if have == v => None,
            Some(have) => Some(format!("needs {k}={v}, the workload has {k}={have}")),
            None => Some(format!("needs {k}={v}, the workload has no label {k}")),
        })
        .collect()
}

fn show(labels: &BTreeMap<String, String>) -> String {
    let items: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{{{}}}", items.join(", "))
}

/// The outcome: the governing file's index, or an error message.
fn choose(
    policies: &[Policy],
    files: &[PathBuf],
    labels: &BTreeMap<String, String>,
) -> Result<(usize, String), String> {
    let name = |i: usize| format!("policy \"{}\" ({})", policies[i].name, files[i].display());
    match policy_for(policies, labels) {
        Ok(Some(p)) => {
            let i = policies.iter().position(|q| std::ptr::eq(q, p)).expect("chosen from the list");
            let selector = p.workload_selector.as_ref().expect("a workload policy");
            Ok((i, format!("{} governs it: its workloadSelector {selector} matches", name(i))))
        }
        Ok(None) => {
            let defaults: Vec<usize> =
                (0..policies.len()).filter(|&i| policies[i].workload_selector.is_none()).collect();
            match defaults.as_slice() {
                [i] => Ok((*i, format!("{} governs it: no workloadSelector matches, so the node default does", name(*i)))),
                [] => Err("no workloadSelector matches and no file is a node default (a policy without spec.workloadSelector)".into()),
                [a, b, ..] => Err(format!(
                    "no workloadSelector matches, and {} and {} are both node defaults: a node has one",
                    name(*a),
                    name(*b)
                )),
            }
        }
        Err(e) => {
            let file =
                |n: &str| policies.iter().position(|p| p.name == n).map(|i| files[i].display().to_string());
            Err(format!(
                "policies \"{}\" ({}) and \"{}\" ({}) both select a workload labelled {}: their workloadSelectors overlap",
                e.first,
                file(&e.first).unwrap_or_default(),
                e.second,
                file(&e.second).unwrap_or_default(),
                show(labels)
            ))
        }
    }
}

/// `ringfence policy explain --workload LABELS FILE...`: exit 0 with the governing policy, 64
/// for invalid files or labels, or when no single policy governs the workload (two workload
/// policies match, or no default); 66 for an unreadable file.
pub fn explain_workload_command(files: &[PathBuf], workload: &str, json: bool) -> std::io::Result<ExitCode> {
    let labels = match parse_labels(workload) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: --workload: {e}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let mut policies = Vec::new();
    for file in files {
        match load(file) {
            Ok(p) => policies.push(p),
            Err(code) => return Ok(code),
        }
    }
    let outcome = choose(&policies, files, &labels);
    let mut out = std::io::stdout().lock();
    if json {
        let candidates: Vec<Value> =
            policies.iter().zip(files).map(|(p, f)| candidate_json(p, f, &labels)).collect();
        let (governed_by, error) = match &outcome {
            Ok((i, why)) => (
                json!({ "name": policies[*i].name, "file": files[*i], "node_default": policies[*i].workload_selector.is_none(), "why": why }),
                Value::Null,
            ),
            Err(e) => (Value::Null, json!(e)),
        };
        let value =
            json!({ "workload": labels, "governed_by": governed_by, "error": error, "policies": candidates });
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
    } else {
        writeln!(out, "workload: {}", show(&labels))?;
        for (p, f) in policies.iter().zip(files) {
            writeln!(out, "  {}", candidate_text(p, f, &labels))?;
        }
        match &outcome {
            Ok((_, why)) => writeln!(out, "{why}")?,
            Err(e) => eprintln!("error: {e}"),
        }
    }
    Ok(match outcome {
        Ok(_) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(EXIT_USAGE),
    })
}

fn candidate_text(p: &Policy, file: &Path, labels: &BTreeMap<String, String>) -> String {
    let shown = file.display();
    match &p.workload_selector {
        None => format!("{shown}: policy \"{}\": node default (no workloadSelector)", p.name),
        Some(s) => {
            let why = mismatches(p, labels);
            if why.is_empty() {
                format!("{shown}: policy \"{}\": workloadSelector {s} matches", p.name)
            } else {
                format!(
                    "{shown}: policy \"{}\": workloadSelector {s} does not match ({})",
                    p.name,
                    why.join("; ")
                )
            }
        }
    }
}

fn candidate_json(p: &Policy, file: &Path, labels: &BTreeMap<String, String>) -> Value {
    json!({
        "file": file,
        "name": p.name,
        "workload_selector": p.workload_selector.as_ref().map(|s| &s.match_labels),
        "matches": p.workload_selector.is_some() && mismatches(p, labels).is_empty(),
        "mismatches": mismatches(p, labels),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse() {
        let l = parse_labels("job=train, team=ml,tier=").unwrap();
        assert_eq!(l.len(), 3);
        assert_eq!(l["tier"], "");
        assert!(parse_labels("job").is_err());
        assert!(parse_labels("=x").is_err());
        assert!(parse_labels("").unwrap().is_empty());
    }
}
