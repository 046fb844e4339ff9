//! The agent under a control plane (`run --control`): the policy and WireGuard peers come from
//! signed bundles. The last good bundle (kept by the control client) is enforced at start, so a
//! node enforces across restarts and control-plane outages; a node with none yet waits for its
//! first. Each bundle is applied from memory ([`BundleUpdate`]: its policy through the one load
//! path, its peers to the mesh) and answered with whether it applied.
use std::{
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
};

use ringfence_proto::{api::NodeReport, bundle::Bundle};
use tokio::{sync::watch, task::JoinHandle};
use tracing::{info, warn};

use crate::{
    control::{
        identity::control_dir, link, run_sync, AgentEnd, ApplyResult, BundleStore, ControlClient,
        ControlError, Identity, SyncOptions,
    },
    error::AgentError,
    files::write_atomic,
    policy_load::{BundleWorkloads, PolicyLoader, PolicySource},
    spool::EventQueue,
    wg::peers::{self, Peer},
};

/// Where the WireGuard peers of the bundle in force are recorded (inside `<state-dir>/control`,
/// in the mesh's `--wg-peers` format) for operators; the agent never reads it.
pub const PEERS_FILE: &str = "peers.json";

/// The record of the bundle's peers in force.
pub fn peers_path(state_dir: &Path) -> PathBuf {
    control_dir(state_dir).join(PEERS_FILE)
}

/// What a bundle puts in force, typed: its policy, its WireGuard peers, its workload policies
/// and the workloads on other nodes (what `from.workloads` selectors resolve to).
#[derive(Debug, Clone)]
pub struct BundleUpdate {
    /// The bundle's policy, in memory.
    pub source: PolicySource,
    /// The mesh peers (the other nodes of this node's region).
    pub peers: Vec<Peer>,
    /// The workload policies and remote workloads.
    pub workloads: BundleWorkloads,
}

impl BundleUpdate {
    /// The policy, peers and workload part of a verified bundle.
    pub fn of(bundle: &Bundle) -> Result<BundleUpdate, String> {
        let peers = peers::from_bundle(&bundle.peers)
            .map_err(|e| format!("bundle {} peers: {}", bundle.version, e.join("; ")))?;
        let workloads = BundleWorkloads::of(bundle)?;
        Ok(BundleUpdate { source: PolicySource::bundle(bundle), peers, workloads })
    }

    /// The loader for this bundle's policy, with `current`'s checks and the bundle's remote
    /// workloads. While this node runs the mesh, the peers' addresses join the policy's
    /// must-encrypt `spec.peers`.
    pub fn loader(&self, current: &PolicyLoader, mesh: bool) -> PolicyLoader {
        let extra_peers = if mesh { peers::addresses(&self.peers) } else { Vec::new() };
        PolicyLoader {
            source: self.source.clone(),
            extra_peers,
            remote_workloads: self.workloads.remote.clone(),
            ..current.clone()
        }
    }

    /// The workload policies to load: the `--workload-policy` files, then the bundle's.
    pub fn workload_sources(&self, files: &[PathBuf]) -> Vec<PolicySource> {
        let mut sources: Vec<PolicySource> = files.iter().cloned().map(PolicySource::File).collect();
        sources.extend(self.workloads.sources.iter().cloned());
        sources
    }
}

/// A control-plane error as the agent reports it (exit 64 for configuration, 69 unreachable).
pub fn control_err(e: ControlError) -> AgentError {
    match e.exit_code() {
        64 => AgentError::Config(vec![e.to_string()]),
        _ => AgentError::Unavailable(e.to_string()),
    }
}

/// The running connection to the control plane.
pub struct Remote {
    end: AgentEnd,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    state_dir: PathBuf,
    /// What the node reports (WireGuard identity, geo database); the sync task reads it.
    pub report: Arc<Mutex<NodeReport>>,
    /// A bundle that arrived before enforcement started: answered once it is in force.
    first: Option<Bundle>,
    /// The bundle enforced at start.
    pub initial: Bundle,
    /// Whether the agent said it ignores bundles' workload policies (no `--cgroup-root`).
    warned_no_workloads: AtomicBool,
}

impl Remote {
    /// Loads the enrollment and the last good bundle (or waits for the control plane's first
    /// bundle), and starts syncing.
    pub async fn start(state_dir: &Path, events: Option<EventQueue>) -> Result<Remote, AgentError> {
        let identity = Identity::load(state_dir).map_err(control_err)?;
        let mut store = BundleStore::for_identity(&identity).map_err(control_err)?;
        let last = match store.load_last() {
            Ok(b) => b,
            Err(e) => {
                warn!(error = %e, "stored bundle refused; waiting for the control plane's current one");
                None
            }
        };
        let client = ControlClient::new(identity.clone()).map_err(control_err)?;
        let report = Arc::new(Mutex::new(NodeReport::default()));
        let shared = report.clone();
        let (link, end) = link(events, Arc::new(move || shared.lock().expect("report lock").clone()));
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run_sync(client, store, SyncOptions::default(), link, stopped));
        let mut end = end;
        let (first, bundle) = match last {
            Some(b) => {
                info!(version = b.version, policy_version = b.policy_version, node = %identity.node_id(),
                    "control plane: enforcing the last good bundle");
                (None, b)
            }
            None => {
                info!(server = %identity.meta.server_url, node = %identity.node_id(),
                    "control plane: waiting for the first policy bundle");
                let b = end.bundles.recv().await.ok_or_else(|| {
                    AgentError::Unavailable("control-plane sync stopped before the first bundle".into())
                })?;
                (Some(b.clone()), b)
            }
        };
        Ok(Remote {
            end,
            stop,
            task,
            state_dir: state_dir.to_path_buf(),
            report,
            first,
            initial: bundle,
            warned_no_workloads: AtomicBool::new(false),
        })
    }

    /// Without `--cgroup-root` a bundle's workload policies cannot be enforced: says so once.
    pub fn warn_no_cgroup_root(&self, b: &Bundle) {
        if !b.workload_policies.is_empty() && !self.warned_no_workloads.swap(true, Ordering::Relaxed) {
            let names: Vec<&str> = b.workload_policies.iter().map(|w| w.name.as_str()).collect();
            warn!(version = b.version, workload_policies = ?names,
                "the bundle carries workload policies but the agent runs without --cgroup-root: only its node default is enforced");
        }
    }

    /// What the node reports about its workloads from now on (`None`: none tracked); a change
    /// is reported soon, not only with the next periodic report.
    pub fn set_workloads(&self, workloads: Option<Vec<ringfence_proto::api::WorkloadReport>>) {
        let mut report = self.report.lock().expect("report lock");
        if workloads.is_some() && report.workloads != workloads {
            report.workloads = workloads;
            self.end.report_now.notify_one();
        }
    }

    /// What the node reports about its WireGuard peers from now on; reported soon (not only
    /// with the next periodic report) when a peer came or went or had its first handshake.
    pub fn set_wireguard_peers(&self, peers: Vec<ringfence_proto::api::WireGuardPeerStatus>) {
        let shape = |v: &[ringfence_proto::api::WireGuardPeerStatus]| {
            v.iter().map(|p| (p.public_key.clone(), p.last_handshake_ms.is_some())).collect::<Vec<_>>()
        };
        let mut report = self.report.lock().expect("report lock");
        let changed = report.wireguard_peers.as_deref().is_none_or(|old| shape(old) != shape(&peers));
        report.wireguard_peers = Some(peers);
        if changed {
            self.end.report_now.notify_one();
        }
    }

    /// Records the peers of the bundle now in force ([`PEERS_FILE`]); a failure is logged only.
    pub fn record_peers(&self, b: &Bundle) {
        let path = peers_path(&self.state_dir);
        if let Err(e) = write_atomic(&path, &crate::control::bundles::peers_document(b), 0o600) {
            warn!(error = %e, version = b.version, "the record of the bundle's WireGuard peers was not written");
        }
    }

    /// The first bundle is in force (or not): tells the control plane.
    pub async fn started(&mut self, result: Result<(), String>) {
        if let Some(b) = self.first.take() {
            self.answer(&b, result).await;
        }
    }

    /// The next bundle to apply.
    pub async fn next(&mut self) -> Option<Bundle> {
        self.end.bundles.recv().await
    }

    /// Tells the control plane whether `b` is in force.
    pub async fn answer(&self, b: &Bundle, result: Result<(), String>) {
        let r = match result {
            Ok(()) => ApplyResult::applied(b),
            Err(why) => ApplyResult::failed(b, why),
        };
        if self.end.results.send(r).await.is_err() {
            warn!("control-plane sync has stopped; the answer is lost");
        }
    }

    /// Stops syncing.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

#[cfg(test)]
#[path = "remote_workloads_tests.rs"]
mod workloads_tests;

#[cfg(test)]
mod tests {
    use ringfence_proto::bundle::{Peer as BundlePeer, BUNDLE_FORMAT};
    use wireguard_control::Key;

    use super::*;

    fn bundle(version: u64, policy_yaml: &str) -> Bundle {
        Bundle {
            format: BUNDLE_FORMAT.into(),
            version,
            node_id: "n-1".into(),
            region: "eu".into(),
            issued_at_ms: 0,
            policy_version: 1,
            policy_sha256: "00".repeat(32),
            policy_yaml: policy_yaml.into(),
            peers: vec![BundlePeer {
                name: "n-2".into(),
                public_key: Key([7; 32]).to_base64(),
                endpoint: Some("192.0.2.2:51820".into()),
                allowed_ips: vec!["198.51.100.2/32".into()],
                region: "eu".into(),
            }],
            workload_policies: vec![],
            remote_workloads: vec![],
        }
    }

    const POLICY: &str = "apiVersion: ringfence.dev/v1\nkind: EgressPolicy\nmetadata: { name: from-bundle }\nspec:\n  defaultAction: allow\n  peers: { cidrs: [192.0.2.9/32] }\n";

    fn current() -> PolicyLoader {
        PolicyLoader::plain(PolicySource::File("/unused".into()), false)
    }

    #[test]
    fn a_bundle_is_loaded_from_memory_with_its_peers_merged_while_the_mesh_runs() {
        let update = BundleUpdate::of(&bundle(7, POLICY)).unwrap();
        assert_eq!(update.peers.len(), 1);
        assert_eq!(update.peers[0].endpoint, Some("192.0.2.2:51820".parse().unwrap()));
        let with_mesh = update.loader(&current(), true).load(None).unwrap();
        assert_eq!(with_mesh.policy.name, "from-bundle");
        let peers: Vec<String> = with_mesh.policy.peers.iter().map(ToString::to_string).collect();
        assert_eq!(peers, ["192.0.2.2/32", "192.0.2.9/32", "198.51.100.2/32"]);
        let without_mesh = update.loader(&current(), false).load(None).unwrap();
        let peers: Vec<String> = without_mesh.policy.peers.iter().map(ToString::to_string).collect();
        assert_eq!(peers, ["192.0.2.9/32"], "peers join the policy only while this node runs the mesh");
    }

    #[test]
    fn an_invalid_bundle_policy_names_the_bundle() {
        let update = BundleUpdate::of(&bundle(8, "apiVersion: ringfence.dev/v1\nkind: Nope\n")).unwrap();
        let errors = update.loader(&current(), false).load(None).unwrap_err();
        assert!(errors.0.iter().all(|e| e.starts_with("bundle 8 policy:")), "{errors:?}");
    }
}
