//! A bundle's workload part: its workload policies become in-memory sources loaded beside the
//! `--workload-policy` files, and its remote workloads resolve `from.workloads` selectors, for
//! the default policy's loader and the workload policies'.
use std::path::PathBuf;

use ringfence_common::{ACTION_ALLOW, RULE_DEFAULT};
use ringfence_proto::bundle::{RemoteWorkloadDoc, WorkloadPolicyDoc, BUNDLE_FORMAT};

use super::*;
use crate::{config::RunConfig, workloads::WorkloadPolicies};

const DEFAULT: &str = "apiVersion: ringfence.dev/v1\nkind: EgressPolicy\nmetadata: { name: node-default }\nspec:\n  defaultAction: allow\n  ingress:\n    - { name: from-train, action: allow, from: { workloads: { matchLabels: { job: train } } } }\n";

fn workload_yaml(name: &str, selector: &str) -> String {
    format!(
        "apiVersion: ringfence.dev/v1\nkind: EgressPolicy\nmetadata: {{ name: {name} }}\nspec:\n  {selector}\n  defaultAction: allow\n  ingress:\n    - {{ name: nccl, action: allow, from: {{ workloads: {{ matchLabels: {{ job: train }} }} }} }}\n"
    )
}

fn bundle(workloads: Vec<WorkloadPolicyDoc>, addresses: &[&str]) -> Bundle {
    let remote = |node: &str, job: &str, address: &str| RemoteWorkloadDoc {
        node_id: node.into(),
        labels: [("job".to_string(), job.to_string())].into(),
        addresses: vec![address.into()],
    };
    Bundle {
        format: BUNDLE_FORMAT.into(),
        version: 9,
        node_id: "n-1".into(),
        region: "eu".into(),
        issued_at_ms: 0,
        policy_version: 1,
        policy_sha256: "00".repeat(32),
        policy_yaml: DEFAULT.into(),
        peers: vec![],
        workload_policies: workloads,
        remote_workloads: vec![remote("n-2", "train", addresses[0]), remote("n-3", "eval", addresses[1])],
    }
}

fn doc(name: &str, yaml: String) -> WorkloadPolicyDoc {
    WorkloadPolicyDoc { name: name.into(), version: 4, sha256: "00".repeat(32), yaml }
}

fn cfg(dir: &std::path::Path) -> RunConfig {
    RunConfig {
        policy: None,
        cgroup: dir.to_path_buf(),
        workloads: None,
        bpffs: dir.join("pins"),
        geoip_db: Vec::new(),
        geoip_field: None,
        interfaces: Vec::new(),
        flow_idle_timeout: std::time::Duration::from_secs(60),
        watch_interval: std::time::Duration::from_secs(1),
        grace: std::time::Duration::from_secs(1),
        state_dir: dir.to_path_buf(),
        exfil_poll: std::time::Duration::from_millis(500),
        selftest_every: None,
        metrics_listen: None,
        control: true,
        allow_weaker_isolation: false,
    }
}

fn verdict(compiled: &ringfence_policy::Compiled, addr: &str) -> (u32, u32) {
    compiled.evaluate(addr.parse().unwrap(), 29500, 6)
}

#[test]
fn a_bundles_workload_policies_are_loaded_beside_the_files_with_its_remote_workloads() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = cfg(tmp.path());
    let train = workload_yaml("train", "workloadSelector: { matchLabels: { job: train } }");
    let b = bundle(vec![doc("train", train.clone())], &["10.9.0.2/32", "10.9.0.3/32"]);
    let update = BundleUpdate::of(&b).unwrap();
    // What reaches Enforcer::put_workload_policies / load_workload_policies: the files first,
    // then the bundle's documents in memory.
    let file = PathBuf::from("/etc/ringfence/local.yaml");
    assert_eq!(
        update.workload_sources(std::slice::from_ref(&file)),
        [PolicySource::File(file), PolicySource::Bundle { version: 9, yaml: train }]
    );
    assert_eq!(update.workloads.remote.len(), 2);
    let policies =
        WorkloadPolicies::load_sources(&update.workloads.sources, &update.workloads.remote, &cfg, None)
            .unwrap();
    assert_eq!(policies.list.len(), 1);
    assert_eq!(policies.list[0].loaded.policy.name, "train");
    assert_eq!(policies.remote, update.workloads.remote, "kept for reloads");
    let ingress = policies.list[0].loaded.ingress.as_ref().expect("ingress enforced");
    assert_eq!(verdict(ingress, "10.9.0.2").0, ACTION_ALLOW, "the train job on n-2 may connect");
    assert_eq!(verdict(ingress, "10.9.0.3").1, RULE_DEFAULT, "the eval job on n-3 is not selected");
    // The node default's loader resolves its from.workloads selectors the same way.
    let loaded = update.loader(&current(), false).load(None).unwrap();
    let default_ingress = loaded.ingress.expect("ingress enforced");
    assert_eq!(verdict(&default_ingress, "10.9.0.2").0, ACTION_ALLOW);
    assert_eq!(verdict(&default_ingress, "10.9.0.3").1, RULE_DEFAULT);
}

#[test]
fn a_bundle_whose_workload_part_is_wrong_fails_with_the_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = cfg(tmp.path());
    let bad_address = bundle(vec![], &["10.9.0.2/32", "not-an-address"]);
    let err = BundleUpdate::of(&bad_address).unwrap_err();
    assert!(err.contains("bundle 9") && err.contains("n-3") && err.contains("not-an-address"), "{err}");
    // A workload policy without a workloadSelector, and two overlapping ones: refused as a set.
    let b = bundle(
        vec![
            doc("no-selector", workload_yaml("no-selector", "mode: enforce")),
            doc("a", workload_yaml("a", "workloadSelector: { matchLabels: { job: train } }")),
            doc("b", workload_yaml("b", "workloadSelector: { matchLabels: { team: ml } }")),
        ],
        &["10.9.0.2/32", "10.9.0.3/32"],
    );
    let update = BundleUpdate::of(&b).unwrap();
    let errors =
        WorkloadPolicies::load_sources(&update.workloads.sources, &update.workloads.remote, &cfg, None)
            .unwrap_err()
            .join("; ");
    assert!(errors.contains("\"no-selector\" has no spec.workloadSelector"), "{errors}");
    assert!(errors.contains("\"a\"") && errors.contains("\"b\""), "{errors}");
}

fn current() -> PolicyLoader {
    PolicyLoader::plain(PolicySource::File("/unused".into()), false)
}
