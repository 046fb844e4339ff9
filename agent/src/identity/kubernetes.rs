//! The Kubernetes identity source: pod cgroups as kubelet lays them out, labelled from the pod
//! cache ([`PodCache`], filled by the watch).
//!
//! systemd cgroup driver (the pod uid with `_` for `-`):
//!
//! ```text
//! kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope
//! kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid>.slice/crio-<id>.scope
//! kubepods.slice/kubepods-pod<uid>.slice/cri-containerd-<id>.scope          (Guaranteed QoS)
//! ```
//!
//! cgroupfs driver: `kubepods/burstable/pod<uid>/<id>`, `kubepods/pod<uid>/<id>` (CRI-O:
//! `crio-<id>`). Paths may start at any level (the agent's cgroup root is usually
//! `/sys/fs/cgroup/kubepods.slice`). Labels: the pod's labels, then `k8s.namespace`, `k8s.pod`,
//! `k8s.serviceaccount` from the cache, and always `k8s.pod-uid`, `k8s.qos` and (for a
//! container cgroup) `k8s.container-id`. A pod not (yet) in the cache gets only the latter, so
//! no selector on its labels matches it: the node default governs until the watch catches up.
use std::path::Path;

use crate::identity::pod_cache::PodCache;
use crate::identity::workload::Labels;

/// The source name in [`Workload::source`](crate::identity::workload::Workload::source).
pub const SOURCE: &str = "kubernetes";

/// A pod (or container) cgroup path, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodCgroup {
    /// The pod uid with dashes, as in `metadata.uid`.
    pub uid: String,
    /// `guaranteed`, `burstable` or `besteffort`.
    pub qos: &'static str,
    /// The container id, for a container's cgroup (not for the pod's, nor CRI-O's conmon).
    pub container_id: Option<String>,
}

/// The pod (and container) of `path`, if it is a pod cgroup or below one.
pub fn parse_pod_cgroup(path: &Path) -> Option<PodCgroup> {
    let components: Vec<&str> = path.to_str()?.split('/').filter(|c| !c.is_empty()).collect();
    components.iter().enumerate().find_map(|(i, c)| {
        let parent = i.checked_sub(1).map(|p| components[p]);
        let (qos, uid) = systemd_pod(c).or_else(|| cgroupfs_pod(c, parent))?;
        let container_id = components.get(i + 1).and_then(|c| container_id(c));
        Some(PodCgroup { uid, qos, container_id })
    })
}

/// `kubepods[-<qos>]-pod<uid_>.slice`.
fn systemd_pod(component: &str) -> Option<(&'static str, String)> {
    let rest = component.strip_suffix(".slice")?.strip_prefix("kubepods-")?;
    let (qos, uid) = if let Some(uid) = rest.strip_prefix("pod") {
        ("guaranteed", uid)
    } else if let Some(uid) = rest.strip_prefix("burstable-pod") {
        ("burstable", uid)
    } else {
        ("besteffort", rest.strip_prefix("besteffort-pod")?)
    };
    valid_uid(uid).then(|| (qos, uid.replace('_', "-")))
}

/// `pod<uid>` under `kubepods`, `burstable` or `besteffort` (or at the top).
fn cgroupfs_pod(component: &str, parent: Option<&str>) -> Option<(&'static str, String)> {
    let uid = component.strip_prefix("pod")?;
    let qos = match parent {
        None | Some("kubepods") => "guaranteed",
        Some("burstable") => "burstable",
        Some("besteffort") => "besteffort",
        Some(_) => return None,
    };
    (valid_uid(uid) && !uid.contains('_')).then(|| (qos, uid.to_owned()))
}

/// A UUID (with `-` or, in systemd unit names, `_`), or the 32-hex hash uid of a static pod.
fn valid_uid(uid: &str) -> bool {
    (32..=36).contains(&uid.len())
        && uid.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b) || b == b'-' || b == b'_')
}

fn container_id(component: &str) -> Option<String> {
    let hex = |s: &str| s.len() >= 12 && s.bytes().all(|b| b.is_ascii_hexdigit());
    let id = match component.strip_suffix(".scope") {
        Some(unit) => ["cri-containerd-", "crio-", "docker-", "cri-dockerd-"]
            .iter()
            .find_map(|prefix| unit.strip_prefix(prefix))?,
        None => component.strip_prefix("crio-").unwrap_or(component),
    };
    hex(id).then(|| id.to_owned())
}

/// The labels of a parsed pod cgroup, with the pod's (when the cache knows it).
pub fn labels_for(cgroup: &PodCgroup, cache: &PodCache) -> Labels {
    let mut labels = Labels::new();
    match cache.get(&cgroup.uid) {
        Some(pod) => {
            labels.extend(pod.labels);
            labels.insert("k8s.namespace".into(), pod.namespace);
            labels.insert("k8s.pod".into(), pod.name);
            if let Some(sa) = pod.service_account {
                labels.insert("k8s.serviceaccount".into(), sa);
            }
        }
        None => tracing::debug!(uid = %cgroup.uid, "pod cgroup of a pod not in the cache (yet)"),
    }
    labels.insert("k8s.pod-uid".into(), cgroup.uid.clone());
    labels.insert("k8s.qos".into(), cgroup.qos.into());
    if let Some(id) = &cgroup.container_id {
        labels.insert("k8s.container-id".into(), id.clone());
    }
    labels
}

/// The Kubernetes source over a shared pod cache.
#[derive(Clone, Debug)]
pub struct KubernetesSource {
    cache: PodCache,
}

impl KubernetesSource {
    pub fn new(cache: PodCache) -> Self {
        KubernetesSource { cache }
    }

    /// The cache this source reads (subscribe to it to re-resolve when pods change).
    pub fn cache(&self) -> &PodCache {
        &self.cache
    }

    /// The labels of `path` if it is a pod cgroup or below one.
    pub fn labels(&self, path: &Path) -> Option<Labels> {
        parse_pod_cgroup(path).map(|c| labels_for(&c, &self.cache))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::pod_cache::PodInfo;

    const UID: &str = "8f3a2c1e-5b7d-4e9f-a1c3-2d4e6f8a0b1c";
    const CID: &str = "3d5f7a9c1e2b4d6f8a0c2e4f6a8b0d2f4e6a8c0b2d4f6e8a0c2b4d6f8e0a2c4b";

    fn parsed(path: &str) -> Option<(String, &'static str, Option<String>)> {
        parse_pod_cgroup(Path::new(path)).map(|c| (c.uid, c.qos, c.container_id))
    }

    #[test]
    fn systemd_driver_layouts() {
        let u = UID.replace('-', "_");
        let container = Some((UID.to_owned(), "burstable", Some(CID.to_owned())));
        let full = format!("kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{u}.slice/cri-containerd-{CID}.scope");
        assert_eq!(parsed(&full), container);
        // The agent's root is usually /sys/fs/cgroup/kubepods.slice.
        let relative =
            format!("kubepods-burstable.slice/kubepods-burstable-pod{u}.slice/cri-containerd-{CID}.scope");
        assert_eq!(parsed(&relative), container);
        let guaranteed = format!("kubepods-pod{u}.slice/crio-{CID}.scope");
        assert_eq!(parsed(&guaranteed), Some((UID.to_owned(), "guaranteed", Some(CID.to_owned()))));
        let pod = format!("kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{u}.slice");
        assert_eq!(parsed(&pod), Some((UID.to_owned(), "besteffort", None)));
        let conmon =
            format!("kubepods-besteffort.slice/kubepods-besteffort-pod{u}.slice/crio-conmon-{CID}.scope");
        assert_eq!(parsed(&conmon), Some((UID.to_owned(), "besteffort", None)), "conmon is not a container");
    }

    #[test]
    fn cgroupfs_driver_layouts() {
        let c = Some(CID.to_owned());
        assert_eq!(
            parsed(&format!("kubepods/burstable/pod{UID}/{CID}")),
            Some((UID.to_owned(), "burstable", c.clone()))
        );
        assert_eq!(
            parsed(&format!("kubepods/pod{UID}/{CID}")),
            Some((UID.to_owned(), "guaranteed", c.clone()))
        );
        assert_eq!(
            parsed(&format!("besteffort/pod{UID}/crio-{CID}")),
            Some((UID.to_owned(), "besteffort", c))
        );
        // A static pod's uid is a 32-hex hash.
        let hash = "a3f9c1e27b4d8e6f0c5b2a1d9e8f7c6b";
        assert_eq!(
            parsed(&format!("kubepods/burstable/pod{hash}")),
            Some((hash.to_owned(), "burstable", None))
        );
    }

    #[test]
    fn other_cgroups_are_not_pods() {
        for path in [
            "kubepods.slice",
            "kubepods.slice/kubepods-burstable.slice",
            "system.slice/containerd.service",
            "system.slice/kubelet.service",
            "kubepods-burstable-podnothex.slice",
            "user.slice/pod8f3a2c1e-5b7d-4e9f-a1c3-2d4e6f8a0b1c/x",
        ] {
            assert_eq!(parsed(path), None, "{path} taken for a pod cgroup");
        }
    }

    #[test]
    fn labels_from_the_cache() {
        let cache = PodCache::new();
        let source = KubernetesSource::new(cache.clone());
        let path = format!("kubepods-pod{}.slice/cri-containerd-{CID}.scope", UID.replace('-', "_"));
        let before = source.labels(Path::new(&path)).expect("pod cgroup");
        assert_eq!(
            before.keys().map(String::as_str).collect::<Vec<_>>(),
            ["k8s.container-id", "k8s.pod-uid", "k8s.qos"]
        );
        cache.upsert(PodInfo {
            uid: UID.into(),
            namespace: "training".into(),
            name: "llama-finetune-worker-0".into(),
            service_account: Some("trainer".into()),
            labels: [
                ("app".to_owned(), "llama-finetune".to_owned()),
                ("k8s.pod".to_owned(), "spoofed".to_owned()),
            ]
            .into(),
            mirror_uid: None,
        });
        let after = source.labels(Path::new(&path)).expect("pod cgroup");
        assert_eq!(after["app"], "llama-finetune");
        assert_eq!(after["k8s.pod"], "llama-finetune-worker-0", "a pod label cannot override k8s.pod");
        assert_eq!(
            (after["k8s.namespace"].as_str(), after["k8s.serviceaccount"].as_str()),
            ("training", "trainer")
        );
    }
}
