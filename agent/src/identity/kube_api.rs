//! The parts of the Kubernetes API's JSON the pod watch reads (unknown fields ignored), and
//! the URLs it calls.
use std::collections::BTreeMap;

use serde::Deserialize;

use crate::identity::pod_cache::{PodInfo, MIRROR_ANNOTATION};

/// `v1.Pod`, reduced.
#[derive(Clone, Debug, Deserialize)]
pub struct Pod {
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: PodSpec,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    #[serde(default)]
    pub uid: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub resource_version: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    #[serde(default)]
    pub node_name: Option<String>,
    #[serde(default)]
    pub service_account_name: Option<String>,
}

/// `v1.PodList`, reduced.
#[derive(Clone, Debug, Deserialize)]
pub struct PodList {
    #[serde(default)]
    pub metadata: ListMeta,
    #[serde(default)]
    pub items: Vec<Pod>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListMeta {
    #[serde(default)]
    pub resource_version: Option<String>,
}

/// `metav1.WatchEvent`: `object` is a Pod, or a Status for `ERROR`.
#[derive(Clone, Debug, Deserialize)]
pub struct WatchEvent {
    #[serde(rename = "type")]
    pub kind: String,
    pub object: serde_json::Value,
}

/// `metav1.Status`, reduced (an `ERROR` event's object, an error response's body).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Status {
    #[serde(default)]
    pub code: u16,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub message: String,
}

impl From<Pod> for PodInfo {
    fn from(pod: Pod) -> Self {
        let mut meta = pod.metadata;
        PodInfo {
            mirror_uid: meta.annotations.remove(MIRROR_ANNOTATION),
            uid: meta.uid,
            namespace: meta.namespace,
            name: meta.name,
            service_account: pod.spec.service_account_name.filter(|s| !s.is_empty()),
            labels: meta.labels,
        }
    }
}

/// `GET /api/v1/pods?fieldSelector=spec.nodeName=<node>` (a list).
pub fn list_url(base: &str, node: &str) -> String {
    format!("{}/api/v1/pods?fieldSelector={}", base.trim_end_matches('/'), node_selector(node))
}

/// The watch from `resource_version`; the server ends it after `timeout_seconds`.
pub fn watch_url(base: &str, node: &str, resource_version: &str, timeout_seconds: u32) -> String {
    format!(
        "{}/api/v1/pods?fieldSelector={}&watch=true&allowWatchBookmarks=true&resourceVersion={}&timeoutSeconds={timeout_seconds}",
        base.trim_end_matches('/'),
        node_selector(node),
        encode(resource_version),
    )
}

fn node_selector(node: &str) -> String {
    encode(&format!("spec.nodeName={node}"))
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            list_url("https://10.96.0.1:443/", "gpu-node-07"),
            "https://10.96.0.1:443/api/v1/pods?fieldSelector=spec.nodeName%3Dgpu-node-07"
        );
        assert_eq!(
            watch_url("https://10.96.0.1", "gpu-node-07", "48213", 290),
            "https://10.96.0.1/api/v1/pods?fieldSelector=spec.nodeName%3Dgpu-node-07&watch=true\
             &allowWatchBookmarks=true&resourceVersion=48213&timeoutSeconds=290"
        );
    }

    #[test]
    fn pod_info_from_a_static_pods_mirror() {
        let json = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"etcd-cp-1","namespace":"kube-system",
            "uid":"9e1b0c7a-3f4d-4b2e-8a6c-5d7e9f1a2b3c","resourceVersion":"311",
            "annotations":{"kubernetes.io/config.mirror":"5f0c8e2d7a9b4c1e3f6a8d0b2c4e6f8a",
            "kubernetes.io/config.source":"file"},"labels":{"component":"etcd","tier":"control-plane"}},
            "spec":{"nodeName":"cp-1","serviceAccountName":"","containers":[{"name":"etcd","image":"registry.k8s.io/etcd:3.5.12-0"}]},
            "status":{"phase":"Running"}}"#;
        let pod: Pod = serde_json::from_str(json).unwrap_or_else(|e| panic!("real pod JSON refused: {e}"));
        let info = PodInfo::from(pod);
        assert_eq!(info.mirror_uid.as_deref(), Some("5f0c8e2d7a9b4c1e3f6a8d0b2c4e6f8a"));
        assert_eq!((info.name.as_str(), info.service_account), ("etcd-cp-1", None));
        assert_eq!(info.labels["component"], "etcd");
    }
}
