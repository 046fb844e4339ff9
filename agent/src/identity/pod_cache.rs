//! The pods on this node as the Kubernetes identity source needs them, keyed by pod uid; filled
//! by the watch ([`kube_watch`](crate::identity::kube_watch)), read by the cgroup resolver.
use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::watch;

use crate::identity::workload::Labels;

/// The annotation a static pod's mirror carries: the uid kubelet gave the static pod (the one
/// in its cgroup path), which differs from the mirror's own uid.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// What the identity needs of a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodInfo {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub service_account: Option<String>,
    pub labels: Labels,
    /// For a static pod's mirror: the static pod's uid ([`MIRROR_ANNOTATION`]).
    pub mirror_uid: Option<String>,
}

/// Pods by uid, shared (cloning shares); every change bumps a generation counter that
/// [`PodCache::subscribe`] lets a caller wait on.
#[derive(Clone, Debug)]
pub struct PodCache {
    pods: Arc<RwLock<HashMap<String, PodInfo>>>,
    generation: Arc<watch::Sender<u64>>,
}

impl Default for PodCache {
    fn default() -> Self {
        PodCache { pods: Arc::default(), generation: Arc::new(watch::Sender::new(0)) }
    }
}

impl PodCache {
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> RwLockReadGuard<'_, HashMap<String, PodInfo>> {
        self.pods.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<String, PodInfo>> {
        self.pods.write().unwrap_or_else(|e| e.into_inner())
    }

    fn changed(&self) {
        self.generation.send_modify(|g| *g += 1);
    }

    /// The pod whose cgroup carries `uid`: by uid, else the mirror of the static pod `uid`.
    pub fn get(&self, uid: &str) -> Option<PodInfo> {
        let pods = self.read();
        pods.get(uid).or_else(|| pods.values().find(|p| p.mirror_uid.as_deref() == Some(uid))).cloned()
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    /// Every pod, sorted by namespace and name.
    pub fn snapshot(&self) -> Vec<PodInfo> {
        let mut pods: Vec<PodInfo> = self.read().values().cloned().collect();
        pods.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        pods
    }

    /// The generation counter: it changes whenever the pods do.
    pub fn generation(&self) -> u64 {
        *self.generation.borrow()
    }

    /// A receiver of the generation counter, which changes whenever the pods do.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Replaces every pod (after a list).
    pub fn replace_all(&self, pods: impl IntoIterator<Item = PodInfo>) {
        *self.write() = pods.into_iter().map(|p| (p.uid.clone(), p)).collect();
        self.changed();
    }

    /// Adds or updates one pod.
    pub fn upsert(&self, pod: PodInfo) {
        self.write().insert(pod.uid.clone(), pod);
        self.changed();
    }

    /// Removes the pod `uid`, if present.
    pub fn remove(&self, uid: &str) {
        if self.write().remove(uid).is_some() {
            self.changed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, name: &str, mirror: Option<&str>) -> PodInfo {
        PodInfo {
            uid: uid.into(),
            namespace: "kube-system".into(),
            name: name.into(),
            service_account: None,
            labels: Labels::new(),
            mirror_uid: mirror.map(Into::into),
        }
    }

    #[test]
    fn lookups_by_uid_and_by_mirror() {
        let cache = PodCache::new();
        let mut changes = cache.subscribe();
        cache.replace_all([
            pod("0b8e6f2c-5a3d-4c1e-9f7a-2d4b6c8e0a1f", "coredns-7db6d8ff4d-x2k9p", None),
            pod(
                "5d1e8a4b-2c7f-4e9a-b3d6-1f0a9c8e7b62",
                "kube-apiserver-cp-1",
                Some("a3f9c1e27b4d8e6f0c5b2a1d9e8f7c6b"),
            ),
        ]);
        assert!(changes.has_changed().expect("sender alive"), "replace_all must signal a change");
        changes.mark_unchanged();
        assert_eq!(
            cache.get("0b8e6f2c-5a3d-4c1e-9f7a-2d4b6c8e0a1f").map(|p| p.name).as_deref(),
            Some("coredns-7db6d8ff4d-x2k9p")
        );
        assert_eq!(
            cache.get("a3f9c1e27b4d8e6f0c5b2a1d9e8f7c6b").map(|p| p.name).as_deref(),
            Some("kube-apiserver-cp-1")
        );
        cache.remove("0b8e6f2c-5a3d-4c1e-9f7a-2d4b6c8e0a1f");
        cache.remove("not-there");
        assert_eq!(cache.len(), 1);
        assert_eq!(*changes.borrow_and_update(), 2, "one change per effective mutation");
    }
}
