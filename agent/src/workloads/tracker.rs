//! The workload tracker: scans the cgroup tree, resolves labels, chooses policies, keeps the
//! kernel's workload entries and the state file (`workloads.json`, read by
//! `ringfence-agent workloads`) in step, and wakes on tree changes.
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Serialize;
use tokio::sync::watch;
use tracing::{info, warn};

use super::{
    policies::WorkloadPolicies,
    scan::{cgroup_id, scan, scan_below},
    table::{label_string, visible_labels, Change, Tracked, WorkloadTable},
    watch::{CgroupWatch, TreeEvent},
};
use crate::{
    error::AgentError,
    files,
    identity::{
        kube_client::{node_name, run_pod_watch, ApiEndpoint, WatchOptions},
        IdentityConfig, PodCache, Resolver,
    },
    maps::PinnedMaps,
};

/// The state file in the agent's state directory.
pub const STATE_FILE: &str = "workloads.json";

/// One line of the state file.
#[derive(Debug, Serialize, serde::Deserialize)]
struct Row {
    path: PathBuf,
    cgroup_id: u64,
    labels: std::collections::BTreeMap<String, String>,
    source: String,
    /// The governing policy's name; `None`: the node default.
    policy: Option<String>,
    policy_index: u32,
    problem: Option<String>,
}

/// What woke the tracker.
#[derive(Debug)]
pub enum Wake {
    Tree(Vec<TreeEvent>),
    Tick,
}

pub struct Tracker {
    root: PathBuf,
    resolver: Resolver,
    pub policies: WorkloadPolicies,
    table: WorkloadTable,
    /// The cgroup tree (path relative to the root -> cgroup id), followed by inotify.
    tree: std::collections::BTreeMap<PathBuf, u64>,
    watch: CgroupWatch,
    rescan: tokio::time::Interval,
    state_file: PathBuf,
    /// Stops the Kubernetes pod watch (if one runs) when dropped.
    _stop_pods: Option<watch::Sender<bool>>,
    /// Changes of the pod cache (the pod watch's), which relabel pod cgroups.
    pod_changes: Option<watch::Receiver<u64>>,
    /// The identity inputs' version at the last full resolution.
    inputs: Option<(u64, u64, u64)>,
}

/// How long the first sync waits for the pod watch's first list: without it, pod cgroups would
/// have no labels and fall to the node default while their old entries are still pinned.
const FIRST_LIST_WAIT: Duration = Duration::from_secs(10);

impl Tracker {
    /// Starts tracking `root` (the Kubernetes pod watch too, when configured, waiting up to
    /// [`FIRST_LIST_WAIT`] for its first list). Call [`Tracker::sync`] before attaching the
    /// programs, so existing workloads never see the node default.
    pub async fn start(
        root: &Path,
        identity: &IdentityConfig,
        policies: WorkloadPolicies,
        state_dir: &Path,
        rescan: Duration,
    ) -> Result<Self, AgentError> {
        let pods = PodCache::new();
        let mut stop_pods = None;
        let mut pod_changes = None;
        if let Some(k) = &identity.kubernetes {
            let endpoint =
                ApiEndpoint::from_config(k).map_err(|e| AgentError::Config(vec![e.to_string()]))?;
            let node = node_name(k).map_err(|e| AgentError::Config(vec![e.to_string()]))?;
            let (tx, rx) = watch::channel(false);
            let cache = pods.clone();
            tokio::spawn(async move {
                if let Err(e) = run_pod_watch(endpoint, node, cache, WatchOptions::default(), rx).await {
                    tracing::error!(error = %e, "kubernetes pod watch stopped");
                }
            });
            stop_pods = Some(tx);
            let mut changes = pods.subscribe();
            if tokio::time::timeout(FIRST_LIST_WAIT, changes.changed()).await.is_err() {
                warn!(wait_s = FIRST_LIST_WAIT.as_secs(),
                    "kubernetes: no pod list yet; pod cgroups are governed by the node default until the watch lists them");
            }
            pod_changes = Some(changes);
        }
        let resolver =
            Resolver::from_config(identity, &pods).map_err(|e| AgentError::Config(vec![e.to_string()]))?;
        let watch = CgroupWatch::new(root).map_err(|e| AgentError::io("inotify", root, e))?;
        let mut rescan = tokio::time::interval(rescan);
        rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ok(Self {
            root: root.to_owned(),
            resolver,
            policies,
            table: WorkloadTable::default(),
            tree: Default::default(),
            watch,
            rescan,
            state_file: state_dir.join(STATE_FILE),
            _stop_pods: stop_pods,
            pod_changes,
            inputs: None,
        })
    }

    /// Scans the whole tree (at start, and when inotify lost events), then [`Tracker::refresh`].
    pub fn sync(&mut self, maps: &mut PinnedMaps) -> Result<Vec<Change>, AgentError> {
        self.tree = scan(&self.root).into_iter().collect();
        for rel in self.tree.keys() {
            self.watch.watch(rel);
        }
        self.refresh(maps, true)
    }

    /// Follows what woke the tracker: tree changes are applied to the tree as inotify reported
    /// them (a new directory is scanned, in case it had children before its watch existed);
    /// a tick only re-resolves labels (identity files and the pod watch change on their own).
    pub fn on_wake(&mut self, wake: Wake, maps: &mut PinnedMaps) -> Result<Vec<Change>, AgentError> {
        let Wake::Tree(events) = wake else {
            // Labels come from files and the pod watch: re-resolve only when those changed.
            self.resolver.reload_static();
            let changed = self.inputs != Some(self.resolver.inputs_version());
            return if changed { self.refresh(maps, true) } else { Ok(Vec::new()) };
        };
        for ev in events {
            match ev {
                TreeEvent::Overflow => return self.sync(maps),
                TreeEvent::Created(rel) => {
                    let Some(id) = cgroup_id(&self.root, &rel) else { continue };
                    self.watch.watch(&rel);
                    for (below, id) in scan_below(&self.root, &rel) {
                        self.watch.watch(&below);
                        self.tree.insert(below, id);
                    }
                    self.tree.insert(rel, id);
                }
                TreeEvent::Deleted(rel) => {
                    self.tree.retain(|p, _| !p.starts_with(&rel));
                    self.watch.forget(&rel);
                }
            }
        }
        self.refresh(maps, false)
    }

    /// Resolves the cgroups of the tree (all of them, or only those not known yet), updates the
    /// kernel's workload entries and the state file; logs and returns what changed.
    pub fn refresh(&mut self, maps: &mut PinnedMaps, all: bool) -> Result<Vec<Change>, AgentError> {
        if all {
            self.inputs = Some(self.resolver.inputs_version());
        }
        let (resolver, policies) = (&self.resolver, &self.policies);
        let changes = self.table.update(&self.tree, all, |p| resolver.resolve(p), |l| policies.choose(l));
        maps.set_workloads(&self.table.kernel_entries())?;
        for c in &changes {
            self.log(c);
        }
        if !changes.is_empty() {
            self.save();
        }
        Ok(changes)
    }

    fn log(&self, change: &Change) {
        match change {
            Change::Removed(path) => info!(workload = %path.display(), "workload ended"),
            Change::Added(path) | Change::Updated(path) => {
                let Some(t) = self.table.get(path) else { return };
                let what =
                    if matches!(change, Change::Added(_)) { "workload found" } else { "workload changed" };
                let policy = t.policy.as_ref().map(|(_, n)| n.as_str()).unwrap_or("node default");
                match &t.problem {
                    Some(p) => warn!(workload = %path.display(), cgroup_id = t.cgroup_id, problem = %p,
                        "{what}: no policy could be chosen; the node default governs it"),
                    None => info!(workload = %path.display(), cgroup_id = t.cgroup_id, source = t.source,
                        labels = %t.label_string(), policy, "{what}"),
                }
            }
        }
    }

    fn save(&self) {
        let rows: Vec<Row> = self
            .table
            .iter()
            .map(|(path, t)| Row {
                path: path.clone(),
                cgroup_id: t.cgroup_id,
                labels: t.labels.clone(),
                source: t.source.to_string(),
                policy: t.policy.as_ref().map(|(_, n)| n.clone()),
                policy_index: t.policy.as_ref().map(|(i, _)| *i).unwrap_or(0),
                problem: t.problem.clone(),
            })
            .collect();
        let text = serde_json::to_string_pretty(&rows).expect("serialize workloads");
        if let Err(e) = files::write_atomic(&self.state_file, text.as_bytes(), 0o644) {
            warn!(error = %e, "could not write the workloads state file");
        }
    }

    /// The workloads as the node reports them to the control plane: path under the root,
    /// labels (without the internal cgroup label), the governing policy's name (`default`, the
    /// node default's, when no workload policy selects it).
    pub fn report(&self, default: Option<&str>) -> Vec<ringfence_proto::api::WorkloadReport> {
        self.table
            .iter()
            .map(|(path, t)| ringfence_proto::api::WorkloadReport {
                path: path.display().to_string(),
                labels: visible_labels(&t.labels).map(|(k, v)| (k.clone(), v.clone())).collect(),
                policy: t.policy.as_ref().map(|(_, n)| n.clone()).or_else(|| default.map(str::to_owned)),
            })
            .collect()
    }

    /// Resolves when the tree changed (a cgroup made or removed) or the rescan interval passed
    /// (labels from files and the pod watch change without a cgroup event).
    pub async fn next(&mut self) -> Wake {
        tokio::select! {
            r = self.watch.changed() => match r {
                Ok(events) => Wake::Tree(events),
                Err(e) => {
                    warn!(error = %e, "cgroup watch; scanning the tree");
                    Wake::Tree(vec![TreeEvent::Overflow])
                }
            },
            _ = self.rescan.tick() => Wake::Tick,
            _ = pod_change(&mut self.pod_changes) => Wake::Tick,
        }
    }

    /// Every workload by cgroup id: (path, `key=value,...` labels), for naming alerts.
    pub fn named(&self) -> std::collections::HashMap<u64, (String, String)> {
        self.table.iter().map(|(p, t)| (t.cgroup_id, (p.display().to_string(), t.label_string()))).collect()
    }

    /// The workload a cgroup id belongs to (for naming events).
    pub fn workload(&self, cgroup_id: u64) -> Option<(&PathBuf, &Tracked)> {
        self.table.by_cgroup_id(cgroup_id)
    }
}

/// The next change of the pod cache (never, without the Kubernetes source).
async fn pod_change(changes: &mut Option<watch::Receiver<u64>>) {
    let Some(rx) = changes else { return std::future::pending().await };
    if rx.changed().await.is_err() {
        // The watch stopped: nothing more will come.
        *changes = None;
        std::future::pending::<()>().await;
    }
}

/// What the running (or last) agent recorded, by cgroup id: (workload path, `key=value,...`
/// labels); empty when nothing was recorded (no `--cgroup-root`).
pub fn recorded(state_dir: &Path) -> std::collections::HashMap<u64, (String, String)> {
    let text = files::read_optional(&state_dir.join(STATE_FILE)).ok().flatten().unwrap_or_default();
    let rows: Vec<Row> = serde_json::from_str(&text).unwrap_or_default();
    rows.into_iter().map(|r| (r.cgroup_id, (r.path.display().to_string(), label_string(&r.labels)))).collect()
}

/// `ringfence-agent workloads`: what the running (or last) agent recorded.
pub fn print_workloads(state_dir: &Path, json: bool) -> Result<(), AgentError> {
    let path = state_dir.join(STATE_FILE);
    let text = files::read_optional(&path).map_err(|e| AgentError::Config(vec![e.to_string()]))?.ok_or_else(
        || {
            AgentError::Config(vec![format!(
                "{}: no workloads recorded (is the agent running with --cgroup-root?)",
                path.display()
            )])
        },
    )?;
    if json {
        println!("{text}");
        return Ok(());
    }
    let rows: Vec<Row> = serde_json::from_str(&text)
        .map_err(|e| AgentError::Config(vec![format!("{}: {e}", path.display())]))?;
    println!("{:<48} {:>10}  {:<20} {:<10} LABELS", "CGROUP", "ID", "POLICY", "SOURCE");
    for r in rows {
        let labels = label_string(&r.labels);
        let policy =
            r.problem.map(|_| "node default (!)".to_string()).or(r.policy).unwrap_or("node default".into());
        println!("{:<48} {:>10}  {:<20} {:<10} {}", r.path.display(), r.cgroup_id, policy, r.source, labels);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recorded_workloads_name_cgroups_for_flows() {
        let dir = std::env::temp_dir().join(format!("rf-recorded-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        assert!(recorded(&dir).is_empty(), "nothing recorded yet");
        let rows = r#"[{"path": "job_7/step_0", "cgroup_id": 42, "source": "slurm", "policy": "eu",
            "policy_index": 1, "problem": null,
            "labels": {"ringfence.dev/cgroup": "job_7/step_0", "slurm.job": "7", "slurm.step": "0"}}]"#;
        std::fs::write(dir.join(STATE_FILE), rows).expect("write");
        let got = recorded(&dir);
        assert_eq!(got.get(&42), Some(&("job_7/step_0".to_string(), "slurm.job=7,slurm.step=0".to_string())));
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
