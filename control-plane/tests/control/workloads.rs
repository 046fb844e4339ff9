//! Workload policies and workload inventory in bundles: a node's bundle carries the workload
//! policies its selector picks, an overlapping workload policy is refused naming both, and the
//! workloads a node reports reach the other nodes of its region as remote workloads.

use reqwest::StatusCode;
use ringfence_proto::api::{
    ErrorBody, NodeInfo, NodeReport, PolicyApplyRequest, PolicyHistory, Selector, WorkloadReport,
};
use ringfence_proto::Bundle;

use crate::common::{Agent, Backend, TestServer};

/// A workload policy for workloads labelled `key=value` (allowing one network).
fn workload_yaml(name: &str, key: &str, value: &str, cidr: &str) -> String {
    format!(
        "apiVersion: ringfence.dev/v1\nkind: EgressPolicy\nmetadata: {{name: {name}}}\nspec:\n  workloadSelector: {{matchLabels: {{{key}: {value}}}}}\n  defaultAction: deny\n  egress:\n    - {{name: web, action: allow, to: {{cidrs: [{cidr}]}}}}\n"
    )
}

async fn bundle_after(agent: &Agent, after: u64) -> Bundle {
    let signed = agent.poll(after, 5).await.expect("a newer bundle");
    signed.verify_for_node(&agent.pinned, after, &agent.node_id).unwrap()
}

fn names(bundle: &Bundle) -> Vec<(String, u64)> {
    bundle.workload_policies.iter().map(|w| (w.name.clone(), w.version)).collect()
}

async fn workload_policies_reach_nodes_by_selector(backend: Backend) {
    let server = TestServer::start(backend).await;
    let eu_gpu = server.agent("eu", &[("gpu", "h100")], "key-eu-gpu").await;
    let eu = server.agent("eu", &[], "key-eu").await;
    let us = server.agent("us", &[], "key-us").await;
    server.apply(&crate::common::policy_yaml("default", "198.51.100.0/24"), "").await;
    let train = workload_yaml("train", "job", "train", "203.0.113.0/24");
    let applied = server.apply(&train, "region=eu").await;
    let mut carried = applied.nodes.clone();
    carried.sort();
    let mut expected = vec![eu_gpu.node_id.clone(), eu.node_id.clone()];
    expected.sort();
    assert_eq!(carried, expected, "both eu nodes carry the workload policy");
    // Another region may select the same workloads: no node gets both.
    server.apply(&workload_yaml("serve-us", "job", "train", "192.0.2.0/24"), "region=us").await;
    let gpu_bundle = bundle_after(&eu_gpu, 0).await;
    assert_eq!(gpu_bundle.policy_version, 1, "the node default stays the default");
    assert_eq!(names(&gpu_bundle), [("train".to_string(), 2)]);
    assert_eq!(gpu_bundle.workload_policies[0].yaml, train);
    assert!(!gpu_bundle.policy_yaml.contains("workloadSelector"));
    assert_eq!(names(&bundle_after(&eu, 0).await), [("train".to_string(), 2)]);
    let us_bundle = bundle_after(&us, 0).await;
    assert_eq!(names(&us_bundle), [("serve-us".to_string(), 3)]);
    // A new version of the same policy (same nodes, same name) replaces it: a new bundle.
    let train2 = workload_yaml("train", "job", "train", "203.0.113.0/25");
    server.apply(&train2, "region=eu").await;
    let next = bundle_after(&eu_gpu, gpu_bundle.version).await;
    assert!(next.version > gpu_bundle.version);
    assert_eq!(names(&next), [("train".to_string(), 4)]);
    assert_eq!(next.workload_policies[0].yaml, train2);
    assert!(us.poll(us_bundle.version, 0).await.is_none(), "the us node's bundle did not change");
    // A workload policy only for gpu nodes joins the gpu node's bundle only.
    server.apply(&workload_yaml("infer", "job", "infer", "192.0.2.0/24"), "region=eu,gpu=h100").await;
    let gpu = bundle_after(&eu_gpu, next.version).await;
    assert_eq!(names(&gpu), [("infer".to_string(), 5), ("train".to_string(), 4)]);
    server.stop().await;
}

async fn overlapping_workload_policy_refused_naming_both(backend: Backend) {
    let server = TestServer::start(backend).await;
    server.agent("eu", &[("gpu", "h100")], "key-a").await;
    server.apply(&crate::common::policy_yaml("default", "198.51.100.0/24"), "").await;
    server.apply(&workload_yaml("train", "job", "train", "203.0.113.0/24"), "region=eu").await;
    // Selects workloads labelled team=ml, for gpu nodes (some of which are in eu): a workload
    // labelled job=train,team=ml on an eu gpu node would have two policies.
    let other = "apiVersion: ringfence.dev/v1\nkind: EgressPolicy\nmetadata: {name: ml-team}\nspec:\n  workloadSelector: {matchLabels: {team: ml}}\n  defaultAction: deny\n";
    let req = PolicyApplyRequest {
        policy_yaml: other.into(),
        selector: Selector::parse("gpu=h100").unwrap(),
        author: None,
        comment: None,
        strict: false,
    };
    let resp = server.admin_post("/v1/policies", &req).await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    let body: ErrorBody = resp.json().await.unwrap();
    for needle in ["\"ml-team\"", "\"train\"", "job=train", "team=ml", "nothing stored"] {
        assert!(body.error.contains(needle), "{needle} missing: {}", body.error);
    }
    let history: PolicyHistory = server.admin_get("/v1/policies/history").await.json().await.unwrap();
    assert_eq!(history.policies.len(), 2, "nothing stored");
    // Its own new version, and a policy for other workloads, are fine.
    server.apply(&workload_yaml("train", "job", "train", "203.0.113.0/25"), "region=eu").await;
    server.apply(&workload_yaml("ml-team", "job", "eval", "203.0.113.0/25"), "gpu=h100").await;
    server.stop().await;
}

fn report(path: &str, labels: &[(&str, &str)], policy: &str) -> WorkloadReport {
    WorkloadReport {
        path: path.into(),
        labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        policy: Some(policy.into()),
    }
}

async fn reported_workloads_reach_the_other_nodes_of_the_region(backend: Backend) {
    let server = TestServer::start(backend).await;
    let a = server.agent("eu", &[], "key-a").await;
    let b = server.agent("eu", &[], "key-bb").await;
    let us = server.agent("us", &[], "key-us").await;
    server.apply(&crate::common::policy_yaml("default", "198.51.100.0/24"), "").await;
    let (a0, b0, us0) = (bundle_after(&a, 0).await, bundle_after(&b, 0).await, bundle_after(&us, 0).await);
    assert!(b0.remote_workloads.is_empty());
    let workloads = vec![
        report("slurm/job-1", &[("job", "train"), ("user", "ana")], "train"),
        report("slurm/job-2", &[("job", "eval")], "default"),
    ];
    let sent = NodeReport { workloads: Some(workloads.clone()), ..NodeReport::default() };
    assert_eq!(a.post("/v1/report", &sent).await.unwrap().status(), StatusCode::NO_CONTENT);
    // The inventory lists them.
    let node: NodeInfo = server.admin_get(&format!("/v1/nodes/{}", a.node_id)).await.json().await.unwrap();
    assert_eq!(node.workloads, workloads);
    let missing = server.admin_get("/v1/nodes/n-nope").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let shown = server.cli(&["nodes", "show", &a.node_id]).await;
    assert!(shown.status.success(), "{}", String::from_utf8_lossy(&shown.stderr));
    let shown = String::from_utf8_lossy(&shown.stdout);
    let line = shown.lines().find(|l| l.starts_with("slurm/job-1")).unwrap_or_else(|| panic!("{shown}"));
    let columns: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(columns, ["slurm/job-1", "train", "job=train,user=ana"], "{shown}");
    // b's bundle carries them with a's tunnel address.
    let b1 = bundle_after(&b, b0.version).await;
    assert!(b1.version > b0.version);
    let remote: Vec<_> = b1
        .remote_workloads
        .iter()
        .map(|r| (r.node_id.as_str(), r.labels.clone(), r.addresses.clone()))
        .collect();
    let address = a.enrolled.tunnel_addresses.clone();
    assert!(!address.is_empty(), "the test server allocates tunnel addresses");
    assert_eq!(
        remote,
        [
            (a.node_id.as_str(), workloads[0].labels.clone(), address.clone()),
            (a.node_id.as_str(), workloads[1].labels.clone(), address.clone()),
        ]
    );
    // a's own bundle does not list them; the us node (another region, not a peer) gets nothing.
    let a1 = bundle_after(&a, a0.version).await;
    assert!(a1.remote_workloads.is_empty());
    assert!(us.poll(us0.version, 0).await.is_none(), "another region's bundle does not change");
    // The same report again changes nothing; a report without workloads keeps them.
    assert_eq!(a.post("/v1/report", &sent).await.unwrap().status(), StatusCode::NO_CONTENT);
    assert_eq!(a.post("/v1/report", &NodeReport::default()).await.unwrap().status(), StatusCode::NO_CONTENT);
    assert!(b.poll(b1.version, 0).await.is_none(), "nothing changed for b");
    // The workload ends: it leaves b's bundle.
    let fewer = NodeReport { workloads: Some(workloads[1..].to_vec()), ..NodeReport::default() };
    assert_eq!(a.post("/v1/report", &fewer).await.unwrap().status(), StatusCode::NO_CONTENT);
    let b2 = bundle_after(&b, b1.version).await;
    assert_eq!(b2.remote_workloads.len(), 1);
    assert_eq!(b2.remote_workloads[0].labels, workloads[1].labels);
    server.stop().await;
}

crate::on_both_backends!(
    workload_policies_reach_nodes_by_selector,
    overlapping_workload_policy_refused_naming_both,
    reported_workloads_reach_the_other_nodes_of_the_region,
);
