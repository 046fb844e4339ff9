//! The monitoring files shipped in `deploy/` (Prometheus alert rules, Grafana dashboards): their
//! structure, the metrics each expression references per scrape job (every reference must name
//! its job: `job="ringfence-agent"` or `job="ringfence-control"`), `promtool check rules` when
//! promtool is installed, and the sample names of a real `/metrics` text to compare them with.
//! Used by the control plane's tests and the privileged agent test.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use yaml_rust2::{Yaml, YamlLoader};

/// The scrape job of the agents.
pub const AGENT_JOB: &str = "ringfence-agent";
/// The scrape job of the control plane.
pub const CONTROL_JOB: &str = "ringfence-control";

/// `deploy/` of this workspace.
pub fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// The alert rules file.
pub fn rules_file() -> PathBuf {
    deploy_dir().join("prometheus/ringfence-rules.yml")
}

/// The dashboards.
pub fn dashboard_files() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(deploy_dir().join("grafana"))
        .expect("deploy/grafana")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    out.sort();
    out
}

/// Every `ringfence_*` metric an expression references, with the job its selector names.
pub fn references(expr: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("ringfence_") {
        let tail = &rest[i..];
        let end = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        let name = &tail[..end];
        // A label value or legend text containing the prefix is not a metric.
        let preceded =
            rest[..i].chars().last().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '"');
        if !preceded {
            let selector = tail[end..].strip_prefix('{').and_then(|s| s.split_once('}')).map(|(s, _)| s);
            let job = selector
                .and_then(|s| s.split(',').find_map(|m| m.trim().strip_prefix("job=\"")?.strip_suffix('"')))
                .ok_or_else(|| format!("{name} in {expr:?} names no job=\"...\" selector"))?;
            out.push((job.to_owned(), name.to_owned()));
        }
        rest = &tail[end..];
    }
    Ok(out)
}

fn rule_exprs(problems: &mut Vec<String>) -> Vec<String> {
    let text = std::fs::read_to_string(rules_file()).expect("read the rules file");
    let docs = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("rules file is not YAML: {e}"));
    let mut exprs = Vec::new();
    let Some(groups) = docs.first().and_then(|d| d["groups"].as_vec()) else {
        problems.push("rules: no `groups` list".into());
        return exprs;
    };
    for group in groups {
        let name = group["name"].as_str().unwrap_or("?");
        for rule in group["rules"].as_vec().map(Vec::as_slice).unwrap_or(&[]) {
            let alert = rule["alert"].as_str().unwrap_or("?");
            for (field, ok) in [
                ("alert", rule["alert"].as_str().is_some()),
                ("expr", rule["expr"].as_str().is_some()),
                ("labels.severity", rule["labels"]["severity"].as_str().is_some()),
                ("annotations.summary", rule["annotations"]["summary"].as_str().is_some()),
            ] {
                if !ok {
                    problems.push(format!("rules: group {name} rule {alert}: no {field}"));
                }
            }
            if !matches!(rule["for"], Yaml::BadValue | Yaml::String(_)) {
                problems.push(format!("rules: {alert}: `for` must be a duration string"));
            }
            exprs.extend(rule["expr"].as_str().map(str::to_owned));
        }
    }
    exprs
}

fn dashboard_exprs(path: &Path, problems: &mut Vec<String>) -> Vec<String> {
    let name = path.display().to_string();
    let d: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("read a dashboard"))
        .unwrap_or_else(|e| panic!("{name} is not JSON: {e}"));
    for field in ["uid", "title"] {
        if !d[field].is_string() {
            problems.push(format!("{name}: no {field}"));
        }
    }
    if !d["schemaVersion"].is_u64() || !d["__inputs"].is_array() {
        problems.push(format!("{name}: not an importable dashboard (schemaVersion, __inputs)"));
    }
    let mut exprs = Vec::new();
    let mut ids = BTreeSet::new();
    for panel in d["panels"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let title = panel["title"].as_str().unwrap_or("?");
        if !ids.insert(panel["id"].as_u64().unwrap_or(0)) || panel["gridPos"]["w"].as_u64().is_none() {
            problems.push(format!("{name}: panel {title:?}: needs a unique id and a gridPos"));
        }
        let targets = panel["targets"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        if targets.is_empty() {
            problems.push(format!("{name}: panel {title:?} has no targets"));
        }
        for t in targets {
            match (t["expr"].as_str(), t["refId"].as_str()) {
                (Some(e), Some(_)) => exprs.push(e.to_owned()),
                _ => problems.push(format!("{name}: panel {title:?}: a target without expr or refId")),
            }
        }
    }
    if exprs.is_empty() {
        problems.push(format!("{name}: no panels with expressions"));
    }
    exprs
}

/// Job → metric names referenced by the rules and dashboards; panics listing every structural
/// problem (missing fields, references without a job).
pub fn referenced() -> BTreeMap<String, BTreeSet<String>> {
    let mut problems = Vec::new();
    let mut exprs = rule_exprs(&mut problems);
    for path in dashboard_files() {
        exprs.extend(dashboard_exprs(&path, &mut problems));
    }
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for expr in &exprs {
        match references(expr) {
            Ok(refs) => {
                for (job, name) in refs {
                    out.entry(job).or_default().insert(name);
                }
            }
            Err(e) => problems.push(e),
        }
    }
    for job in out.keys().filter(|j| *j != AGENT_JOB && *j != CONTROL_JOB) {
        problems.push(format!("unknown job {job:?} (expected {AGENT_JOB} or {CONTROL_JOB})"));
    }
    assert!(problems.is_empty(), "deploy/ monitoring files:\n{}", problems.join("\n"));
    out
}

/// The sample names of a Prometheus or OpenMetrics text.
pub fn exposed(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// The metrics of `job` the files reference that `text` (that job's real `/metrics`) lacks.
pub fn missing(job: &str, text: &str) -> Vec<String> {
    let have = exposed(text);
    referenced().remove(job).unwrap_or_default().into_iter().filter(|m| !have.contains(m)).collect()
}

/// `promtool check rules` on the rules file: `None` when promtool is not installed.
pub fn promtool_check() -> Option<Result<String, String>> {
    let out = Command::new("promtool").arg("check").arg("rules").arg(rules_file()).output().ok()?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Some(if out.status.success() { Ok(text) } else { Err(text) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_need_a_job_and_skip_label_values() {
        let refs =
            references(r#"sum(rate(ringfence_x_total{job="ringfence-agent", k="ringfence_y"}[5m])) > 0"#)
                .unwrap();
        assert_eq!(refs, [("ringfence-agent".to_owned(), "ringfence_x_total".to_owned())]);
        assert!(references("ringfence_nodes > 0").is_err());
        let text = "# HELP a x\na_total{k=\"v\"} 1\nb 2\n# EOF\n";
        assert_eq!(exposed(text), ["a_total".to_owned(), "b".to_owned()].into());
    }

    #[test]
    fn shipped_files_are_well_formed_and_name_both_jobs() {
        let refs = referenced();
        assert!(refs[AGENT_JOB].contains("ringfence_hooks_attached"), "{refs:?}");
        assert!(refs[CONTROL_JOB].contains("ringfence_node_last_seen_timestamp_seconds"), "{refs:?}");
    }
}
