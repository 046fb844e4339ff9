//! The static identity source: a file mapping cgroup path patterns to labels, for services the
//! other sources do not know (an inference server under systemd, a notebook host).
//!
//! ```yaml
//! - pattern: "system.slice/ollama.service"
//!   labels: {app: ollama, ringfence.dev/profile: inference}
//! - pattern: "user.slice/**"
//!   labels: {app: interactive}
//! ```
//!
//! Patterns are relative to the cgroup root, `/`-separated. `*` in a component matches any
//! run of characters within that one component (`cri-containerd-*.scope`, or a whole
//! component); `**` alone as a component matches any number of components, none included
//! (`a/**` matches `a` and everything below it). The first matching entry wins.
use std::path::Path;

use yaml_rust2::Yaml;

use crate::identity::doc::{self, Problems};
use crate::identity::error::{load_file, IdentityError};
use crate::identity::workload::Labels;

/// The source name in [`Workload::source`](crate::identity::workload::Workload::source).
pub const SOURCE: &str = "static";

/// One `pattern` with its `labels`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticRule {
    pub pattern: String,
    pub labels: Labels,
    components: Vec<String>,
}

/// The static mapping, in file order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StaticSource {
    rules: Vec<StaticRule>,
}

impl StaticSource {
    /// Reads the mapping file at `path`.
    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        load_file(path, Self::parse)
    }

    /// Parses a mapping file; every problem found on failure.
    pub fn parse(text: &str) -> Result<Self, Vec<String>> {
        let root = doc::parse(text)?;
        let mut problems = Problems::default();
        let items: &[Yaml] = match &root {
            Yaml::Array(items) => items,
            Yaml::Null => &[],
            other => {
                problems.add(
                    "",
                    format_args!(
                        "expected a sequence of {{pattern, labels}}, found {}",
                        doc::describe(other)
                    ),
                );
                &[]
            }
        };
        let mut rules = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let at = format!("[{i}]");
            let Some(f) = doc::fields(item, &at, &["pattern", "labels"], &mut problems) else { continue };
            let pattern = doc::string(&f, &at, "pattern", true, &mut problems);
            let pattern = pattern.and_then(|p| match compile(&p) {
                Ok(components) => Some((p, components)),
                Err(why) => {
                    problems.add(&doc::join(&at, "pattern"), format_args!("`{p}`: {why}"));
                    None
                }
            });
            let labels = labels(doc::get(&f, "labels"), &doc::join(&at, "labels"), &mut problems);
            if let (Some((pattern, components)), Some(labels)) = (pattern, labels) {
                rules.push(StaticRule { pattern, labels, components });
            }
        }
        problems.into_result(StaticSource { rules })
    }

    /// The rules, in file order.
    pub fn rules(&self) -> &[StaticRule] {
        &self.rules
    }

    /// The labels of the first rule whose pattern matches `path` (relative to the cgroup root).
    pub fn labels(&self, path: &Path) -> Option<Labels> {
        let path = path.to_str()?;
        let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        self.rules.iter().find(|r| matches(&r.components, &components)).map(|r| r.labels.clone())
    }
}

fn labels(node: Option<&Yaml>, at: &str, problems: &mut Problems) -> Option<Labels> {
    let Some(node) = node else {
        problems.add(at, "required");
        return None;
    };
    let Yaml::Hash(map) = node else {
        problems.add(at, format_args!("expected a mapping of label to value, found {}", doc::describe(node)));
        return None;
    };
    let mut out = Labels::new();
    for (k, v) in map {
        match (doc::scalar_text(k), doc::scalar_text(v)) {
            (Some(k), Some(v)) if !k.is_empty() => {
                out.insert(k, v);
            }
            (Some(k), _) if !k.is_empty() => problems
                .add(&doc::join(at, &k), format_args!("expected a string, found {}", doc::describe(v))),
            _ => problems.add(at, "label names must be non-empty strings"),
        }
    }
    Some(out)
}

/// Splits a pattern into components, checking its shape.
fn compile(pattern: &str) -> Result<Vec<String>, &'static str> {
    if pattern.starts_with('/') {
        return Err("must be relative to the cgroup root (no leading `/`)");
    }
    let components: Vec<String> = pattern.trim_end_matches('/').split('/').map(str::to_owned).collect();
    if components.iter().any(String::is_empty) {
        return Err("empty path component");
    }
    if components.iter().any(|c| c.contains("**") && c != "**") {
        return Err("`**` must be a whole path component");
    }
    Ok(components)
}

/// True if the pattern `components` match the path `path`.
fn matches(pattern: &[String], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((first, rest)) if first == "**" => (0..=path.len()).any(|skip| matches(rest, &path[skip..])),
        Some((first, rest)) => path
            .split_first()
            .is_some_and(|(p, path_rest)| component_matches(first, p) && matches(rest, path_rest)),
    }
}

/// `*` matches any run of characters (within the component).
fn component_matches(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((prefix, rest)) => text.strip_prefix(prefix).is_some_and(|t| {
            (0..=t.len()).filter(|i| t.is_char_boundary(*i)).any(|i| component_matches(rest, &t[i..]))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
- pattern: "system.slice/ollama.service"
  labels: {app: ollama, ringfence.dev/profile: inference}
- pattern: "system.slice/docker-*.scope"
  labels: {app: docker}
- pattern: "user.slice/**/jupyter*.scope"
  labels: {app: jupyter, tier: 2}
- pattern: "user.slice/**"
  labels: {app: interactive}
"#;

    fn source() -> StaticSource {
        StaticSource::parse(FILE).unwrap_or_else(|e| panic!("valid static file refused: {e:?}"))
    }

    fn app(path: &str) -> Option<String> {
        source().labels(Path::new(path)).map(|l| l["app"].clone())
    }

    #[test]
    fn first_match_wins() {
        assert_eq!(app("system.slice/ollama.service").as_deref(), Some("ollama"));
        let docker =
            "system.slice/docker-4f1c9a0e2b7d3c6f8e5a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6.scope";
        assert_eq!(app(docker).as_deref(), Some("docker"));
        let jupyter = "user.slice/user-1000.slice/user@1000.service/app.slice/jupyter-lab.scope";
        assert_eq!(app(jupyter).as_deref(), Some("jupyter"));
        assert_eq!(app("user.slice/user-1000.slice/session-3.scope").as_deref(), Some("interactive"));
        assert_eq!(app("user.slice").as_deref(), Some("interactive"), "`**` matches no component too");
        let labels = source().labels(Path::new(jupyter)).expect("jupyter matched");
        assert_eq!(labels["tier"], "2", "unquoted numbers are kept as written");
    }

    #[test]
    fn star_stays_within_one_component() {
        assert_eq!(app("system.slice/ollama.service/extra"), None);
        assert_eq!(app("system.slice/docker-abc/def.scope"), None);
        assert_eq!(app("system.slice/sshd.service"), None);
        assert_eq!(app("init.scope"), None);
    }

    #[test]
    fn every_problem_is_reported() {
        let text = "- pattern: /system.slice/x.service\n  labels: {app: x}\n- pattern: a/**b\n  labels: {}\n\
                    - labels: [x]\n- pattern: ok\n  labels: {app: ok}\n  extra: 1\n";
        let problems = StaticSource::parse(text).expect_err("invalid file accepted");
        assert_eq!(
            problems,
            [
                "[0].pattern: `/system.slice/x.service`: must be relative to the cgroup root (no leading `/`)",
                "[1].pattern: `a/**b`: `**` must be a whole path component",
                "[2].pattern: required",
                "[2].labels: expected a mapping of label to value, found a sequence",
                "[3].extra: unknown field (expected one of: pattern, labels)",
            ]
        );
    }
}
