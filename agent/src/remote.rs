//! The agent under a control plane (`run --control`): the policy and WireGuard peers come from
//! signed bundles. The last good bundle (kept by the control client) is enforced at start, so a
//! node enforces across restarts and control-plane outages; a node with none yet waits for its
//! first. Each bundle is written to the files the agent already enforces from (the policy, the
//! peers) and answered with whether it applied.
use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use ipnet::IpNet;
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
    spool::EventQueue,
};

/// Where a bundle's policy is written (inside `<state-dir>/control`).
pub const POLICY_FILE: &str = "policy.yaml";
/// Where a bundle's WireGuard peers are written (the mesh's `--wg-peers` format).
pub const PEERS_FILE: &str = "peers.json";

/// The policy file `run --control` enforces from.
pub fn policy_path(state_dir: &Path) -> PathBuf {
    control_dir(state_dir).join(POLICY_FILE)
}

/// The peers file `run --control` gives the WireGuard mesh.
pub fn peers_path(state_dir: &Path) -> PathBuf {
    control_dir(state_dir).join(PEERS_FILE)
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
    /// The bundle written at start (its peers' addresses join the policy).
    pub initial: Bundle,
}

impl Remote {
    /// Loads the enrollment, writes the last good bundle's policy and peers into place (or waits
    /// for the control plane's first bundle), and starts syncing.
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
        let remote =
            Remote { end, stop, task, state_dir: state_dir.to_path_buf(), report, first, initial: bundle };
        remote.write(&remote.initial).map_err(control_err)?;
        Ok(remote)
    }

    /// Writes a bundle's policy and peers where the agent reads them (atomically).
    pub fn write(&self, b: &Bundle) -> Result<(), ControlError> {
        let peers = crate::control::bundles::peers_document(b);
        write_atomic(&peers_path(&self.state_dir), &peers, 0o600)?;
        Ok(write_atomic(&policy_path(&self.state_dir), b.policy_yaml.as_bytes(), 0o600)?)
    }

    /// The addresses of a bundle's peers: their WireGuard endpoints' hosts and the addresses
    /// routed to them through the tunnel.
    pub fn peer_addresses(b: &Bundle) -> Vec<IpNet> {
        let mut out = Vec::new();
        for p in &b.peers {
            if let Some(ep) = p.endpoint.as_deref().and_then(|e| e.parse::<SocketAddr>().ok()) {
                out.push(IpNet::from(ep.ip()));
            }
            out.extend(p.allowed_ips.iter().filter_map(|a| a.parse::<IpNet>().ok()));
        }
        out
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
