//! The Kubernetes manifests in deploy/kubernetes: each validates (strict, Kubernetes 1.30) with
//! `kubernetes-validate` (PyPI; `cargo xtask setup` installs it), and the identity config the
//! ConfigMap ships is one the agent accepts.
use std::path::{Path, PathBuf};
use std::process::Command;

use ringfence_agent::identity::IdentityConfig;
use ringfence_tests::skip;
use yaml_rust2::{Yaml, YamlLoader};

/// The Kubernetes version the manifests must be valid for.
const KUBERNETES_VERSION: &str = "1.30.0";

fn manifests() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.unwrap_or_else(|e| panic!("listing {}: {e}", dir.display())).path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "expected the manifests in {}, found {files:?}", dir.display());
    files
}

#[test]
fn manifests_validate_strictly() {
    let test = "deploy_manifests::manifests_validate_strictly";
    let probe = Command::new("kubernetes-validate").arg("--version").output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        skip(
            test,
            "kubernetes-validate is not installed (pip install kubernetes-validate, or cargo xtask setup)",
        );
        return;
    }
    let files = manifests();
    let output = Command::new("kubernetes-validate")
        .args(["--strict", "--quiet", "--kubernetes-version", KUBERNETES_VERSION])
        .args(&files)
        .output()
        .unwrap_or_else(|e| panic!("running kubernetes-validate: {e}"));
    let report =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(
        output.status.success() && !report.contains("ERROR"),
        "kubernetes-validate {KUBERNETES_VERSION} --strict refused the manifests ({}):\n{report}",
        output.status
    );
}

/// Every document in every manifest.
fn documents() -> Vec<(PathBuf, Yaml)> {
    manifests()
        .into_iter()
        .flat_map(|path| {
            let text =
                std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
            let docs = YamlLoader::load_from_str(&text)
                .unwrap_or_else(|e| panic!("{}: not YAML: {e}", path.display()));
            docs.into_iter().map(move |d| (path.clone(), d))
        })
        .collect()
}

fn find<'a>(docs: &'a [(PathBuf, Yaml)], kind: &str, name: &str) -> &'a Yaml {
    docs.iter()
        .map(|(_, d)| d)
        .find(|d| d["kind"].as_str() == Some(kind) && d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind}/{name} in deploy/kubernetes"))
}

#[test]
fn the_shipped_identity_config_is_valid() {
    let docs = documents();
    let config = find(&docs, "ConfigMap", "ringfence-identity")["data"]["identity.yaml"]
        .as_str()
        .expect("ConfigMap ringfence-identity has data.identity.yaml");
    let config =
        IdentityConfig::parse(config).unwrap_or_else(|e| panic!("shipped identity config refused: {e:?}"));
    let kubernetes = config.kubernetes.expect("the kubernetes source is on");
    assert_eq!(kubernetes.node_name, "$NODE_NAME");

    // The DaemonSet gives the agent that variable, the config file and the RBAC it needs.
    let ds = find(&docs, "DaemonSet", "ringfence-agent");
    let pod = &ds["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let env = container["env"].as_vec().expect("container env");
    let node = env.iter().find(|e| e["name"].as_str() == Some("NODE_NAME")).expect("NODE_NAME set");
    assert_eq!(node["valueFrom"]["fieldRef"]["fieldPath"].as_str(), Some("spec.nodeName"));
    let args: Vec<&str> = container["args"].as_vec().expect("args").iter().filter_map(Yaml::as_str).collect();
    let after = |flag: &str| args.iter().position(|a| *a == flag).and_then(|i| args.get(i + 1)).copied();
    assert_eq!(after("--identity"), Some("/etc/ringfence/identity.yaml"));
    assert_eq!(after("--cgroup-root"), Some("/sys/fs/cgroup/kubepods.slice"));
    assert_eq!(pod["hostPID"].as_bool(), Some(false));
    assert_eq!(pod["hostNetwork"].as_bool(), Some(true));
    assert_eq!(container["readinessProbe"]["httpGet"]["path"].as_str(), Some("/readyz"));

    let role = find(&docs, "ClusterRole", "ringfence-agent");
    let rules = role["rules"].as_vec().expect("rules");
    assert_eq!(rules.len(), 1, "pods only");
    let verbs: Vec<&str> =
        rules[0]["verbs"].as_vec().expect("verbs").iter().filter_map(Yaml::as_str).collect();
    assert_eq!(verbs, ["get", "list", "watch"]);
    assert_eq!(rules[0]["resources"][0].as_str(), Some("pods"));
}
