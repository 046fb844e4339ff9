//! The identity configuration file: which identity sources are on, and their settings.
//!
//! ```yaml
//! apiVersion: ringfence.dev/v1
//! kind: IdentitySources
//! sources:
//!   static:
//!     file: /etc/ringfence/workloads.yaml
//!   slurm:
//!     jobInfoDir: /run/ringfence/slurm-jobs      # the default
//!   kubernetes:
//!     nodeName: $NODE_NAME                       # `$VAR`: read from the environment
//!     apiServer: https://10.96.0.1:443           # default: in-cluster (KUBERNETES_SERVICE_*)
//!     tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token   # the default
//!     caFile: /var/run/secrets/kubernetes.io/serviceaccount/ca.crt     # the default
//! ```
//!
//! JSON works too. Unknown fields and unknown source names are errors, and every problem in
//! the file is reported at once.
use std::path::{Path, PathBuf};

use yaml_rust2::Yaml;

use crate::identity::doc::{self, Problems};
use crate::identity::error::{load_file, IdentityError};

/// The `apiVersion` of identity files.
pub const API_VERSION: &str = "ringfence.dev/v1";
/// The `kind` of the identity configuration.
pub const KIND: &str = "IdentitySources";
/// The source names, in the order their labels are merged (later ones win).
pub const SOURCE_NAMES: [&str; 3] = ["kubernetes", "slurm", "static"];

/// Default directory of the per-job files the Slurm prolog writes.
pub const DEFAULT_JOB_INFO_DIR: &str = "/run/ringfence/slurm-jobs";
/// Default service-account token of an in-cluster pod.
pub const DEFAULT_TOKEN_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
/// Default cluster CA of an in-cluster pod.
pub const DEFAULT_CA_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";

/// Which identity sources are on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdentityConfig {
    pub static_file: Option<StaticConfig>,
    pub slurm: Option<SlurmConfig>,
    pub kubernetes: Option<KubernetesConfig>,
}

/// `sources.static`: cgroup path patterns to labels, from a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticConfig {
    pub file: PathBuf,
}

/// `sources.slurm`: Slurm job cgroups, labelled from the prolog's per-job files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlurmConfig {
    pub job_info_dir: PathBuf,
}

/// `sources.kubernetes`: pod cgroups, labelled from a watch of this node's pods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubernetesConfig {
    /// The node's name, or `$VAR` to read it from the environment when the watch starts.
    pub node_name: String,
    /// The API server's base URL; `None`: in-cluster (`KUBERNETES_SERVICE_HOST`/`_PORT`).
    pub api_server: Option<String>,
    pub token_file: PathBuf,
    pub ca_file: PathBuf,
}

impl IdentityConfig {
    /// Reads and validates the configuration file at `path`.
    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        load_file(path, Self::parse)
    }

    /// Parses and validates the configuration text; every problem found on failure.
    pub fn parse(text: &str) -> Result<Self, Vec<String>> {
        let root = doc::parse(text)?;
        let mut problems = Problems::default();
        let mut config = IdentityConfig::default();
        let Some(top) = doc::fields(&root, "", &["apiVersion", "kind", "sources"], &mut problems) else {
            return Err(problems.0);
        };
        doc::header(&top, API_VERSION, KIND, &mut problems);
        match doc::get(&top, "sources") {
            None | Some(Yaml::Null) => problems.add("sources", "required (name at least one source)"),
            Some(sources) => parse_sources(sources, &mut config, &mut problems),
        }
        problems.into_result(config)
    }

    /// True if no source is on.
    pub fn is_empty(&self) -> bool {
        self.static_file.is_none() && self.slurm.is_none() && self.kubernetes.is_none()
    }
}

fn parse_sources(node: &Yaml, config: &mut IdentityConfig, problems: &mut Problems) {
    let Yaml::Hash(map) = node else {
        problems.add("sources", format_args!("expected a mapping, found {}", doc::describe(node)));
        return;
    };
    if map.is_empty() {
        problems.add("sources", "name at least one source");
    }
    for (key, value) in map {
        let Some(name) = key.as_str() else {
            problems
                .add("sources", format_args!("source names must be strings, found {}", doc::describe(key)));
            continue;
        };
        let at = doc::join("sources", name);
        // `slurm:` with nothing under it takes the defaults.
        let empty = Yaml::Hash(Default::default());
        let value = if matches!(value, Yaml::Null) { &empty } else { value };
        match name {
            "static" => config.static_file = parse_static(value, &at, problems),
            "slurm" => config.slurm = parse_slurm(value, &at, problems),
            "kubernetes" => config.kubernetes = parse_kubernetes(value, &at, problems),
            other => problems.add(
                &at,
                format_args!("unknown identity source `{other}` (known: {})", SOURCE_NAMES.join(", ")),
            ),
        }
    }
}

fn parse_static(node: &Yaml, at: &str, problems: &mut Problems) -> Option<StaticConfig> {
    let f = doc::fields(node, at, &["file"], problems)?;
    let file = doc::string(&f, at, "file", true, problems)?;
    Some(StaticConfig { file: file.into() })
}

fn parse_slurm(node: &Yaml, at: &str, problems: &mut Problems) -> Option<SlurmConfig> {
    let f = doc::fields(node, at, &["jobInfoDir"], problems)?;
    let dir =
        doc::string(&f, at, "jobInfoDir", false, problems).unwrap_or_else(|| DEFAULT_JOB_INFO_DIR.into());
    Some(SlurmConfig { job_info_dir: dir.into() })
}

fn parse_kubernetes(node: &Yaml, at: &str, problems: &mut Problems) -> Option<KubernetesConfig> {
    let f = doc::fields(node, at, &["nodeName", "apiServer", "tokenFile", "caFile"], problems)?;
    let node_name = doc::string(&f, at, "nodeName", true, problems);
    let api_server = doc::string(&f, at, "apiServer", false, problems);
    if let Some(url) = &api_server {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            problems.add(&doc::join(at, "apiServer"), format_args!("`{url}` is not an http(s) URL"));
        }
    }
    let token_file =
        doc::string(&f, at, "tokenFile", false, problems).unwrap_or_else(|| DEFAULT_TOKEN_FILE.into());
    let ca_file = doc::string(&f, at, "caFile", false, problems).unwrap_or_else(|| DEFAULT_CA_FILE.into());
    Some(KubernetesConfig {
        node_name: node_name?,
        api_server,
        token_file: token_file.into(),
        ca_file: ca_file.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_three_sources() {
        let text = "apiVersion: ringfence.dev/v1\nkind: IdentitySources\nsources:\n  static:\n    file: \
                    /etc/ringfence/workloads.yaml\n  slurm:\n  kubernetes:\n    nodeName: $NODE_NAME\n";
        let config = IdentityConfig::parse(text).unwrap_or_else(|e| panic!("valid config refused: {e:?}"));
        assert_eq!(config.static_file, Some(StaticConfig { file: "/etc/ringfence/workloads.yaml".into() }));
        assert_eq!(config.slurm, Some(SlurmConfig { job_info_dir: DEFAULT_JOB_INFO_DIR.into() }));
        let k = config.kubernetes.expect("kubernetes on");
        assert_eq!((k.node_name.as_str(), k.api_server), ("$NODE_NAME", None));
        assert_eq!(k.token_file, Path::new(DEFAULT_TOKEN_FILE));
    }

    #[test]
    fn json_is_accepted() {
        let text = r#"{"apiVersion":"ringfence.dev/v1","kind":"IdentitySources",
                       "sources":{"slurm":{"jobInfoDir":"/var/spool/ringfence"}}}"#;
        let config = IdentityConfig::parse(text).unwrap_or_else(|e| panic!("valid JSON refused: {e:?}"));
        assert_eq!(config.slurm, Some(SlurmConfig { job_info_dir: "/var/spool/ringfence".into() }));
        assert!(config.kubernetes.is_none() && config.static_file.is_none());
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = "apiVersion: ringfence.dev/v2\nkind: IdentitySources\nextra: 1\nsources:\n  lsf: {}\n  \
                    static: {}\n  kubernetes:\n    nodeName: node-1\n    apiServer: 10.96.0.1\n    \
                    namespace: x\n";
        let problems = IdentityConfig::parse(text).expect_err("invalid config accepted");
        assert_eq!(
            problems,
            [
                "extra: unknown field (expected one of: apiVersion, kind, sources)",
                "apiVersion: expected `ringfence.dev/v1`, found `ringfence.dev/v2`",
                "sources.lsf: unknown identity source `lsf` (known: kubernetes, slurm, static)",
                "sources.static.file: required",
                "sources.kubernetes.namespace: unknown field (expected one of: nodeName, apiServer, tokenFile, caFile)",
                "sources.kubernetes.apiServer: `10.96.0.1` is not an http(s) URL",
            ]
        );
    }

    #[test]
    fn sources_are_required() {
        let problems = IdentityConfig::parse("apiVersion: ringfence.dev/v1\nkind: IdentitySources\n")
            .expect_err("config without sources accepted");
        assert_eq!(problems, ["sources: required (name at least one source)"]);
        let problems = IdentityConfig::parse("apiVersion: ringfence.dev/v1\nkind: Policy\nsources: {}\n")
            .expect_err("wrong kind accepted");
        assert_eq!(
            problems,
            ["kind: expected `IdentitySources`, found `Policy`", "sources: name at least one source"]
        );
    }
}
