//! `run`, step 1: everything checked before the kernel is touched. Under a control plane the
//! policy comes from the last good bundle (or the first one), and a failed check is answered to
//! the control plane.
use std::path::Path;

use crate::{
    config::{RunConfig, WgConfig},
    error::AgentError,
    policy_load::{BundleWorkloads, PolicyLoader, PolicySource},
    preflight,
    remote::{BundleUpdate, Remote},
    spool::EventQueue,
    wg::{self, peers::Peer},
};

/// A configuration that passed every check.
pub(super) struct Prepared {
    pub cfg: RunConfig,
    /// How the policy is loaded again (reloads, bundles, geo database changes).
    pub loader: PolicyLoader,
    pub checked: preflight::Checked,
    pub wg: Option<wg::Validated>,
    /// The event spool, opened before the control-plane sync that uploads from it.
    pub queue: Option<EventQueue>,
    pub remote: Option<Remote>,
}

/// Connects to the control plane (under `--control`), then runs every check.
pub(super) async fn prepare(cfg: RunConfig, wg_cfg: Option<WgConfig>) -> Result<Prepared, AgentError> {
    let queue = if cfg.control { Some(open_queue(&cfg.state_dir)?) } else { None };
    let mut remote = match &queue {
        Some(q) => Some(Remote::start(&cfg.state_dir, Some(q.clone())).await?),
        None => None,
    };
    match check(&cfg, remote.as_ref(), wg_cfg.as_ref()) {
        Ok((loader, checked, wg)) => Ok(Prepared { cfg, loader, checked, wg, queue, remote }),
        Err(e) => {
            if let Some(r) = remote.as_mut() {
                r.started(Err(e.to_string())).await;
            }
            Err(e)
        }
    }
}

/// The durable event spool in the state directory, shared by the exfiltration shell (and the
/// enforcer, under a control plane) with the control-plane uploader.
pub(super) fn open_queue(state_dir: &Path) -> Result<EventQueue, AgentError> {
    EventQueue::open(state_dir).map_err(|e| AgentError::Config(vec![format!("event spool: {e}")]))
}

type Checks = (PolicyLoader, preflight::Checked, Option<wg::Validated>);

fn check(cfg: &RunConfig, remote: Option<&Remote>, wg_cfg: Option<&WgConfig>) -> Result<Checks, AgentError> {
    let (loader, peers, workloads) = initial_policy(cfg, remote, wg_cfg.is_some())?;
    if let (Some(r), None) = (remote, &cfg.workloads) {
        r.warn_no_cgroup_root(&r.initial);
    }
    let (checked, mut wg_checked) = check_all(cfg, &loader, &workloads, wg_cfg)?;
    if let (Some(v), Some(peers)) = (wg_checked.as_mut(), peers) {
        // Without a peers file the mesh's peers are the bundle's.
        if v.cfg.peers_file.is_none() {
            v.peers = peers;
        }
    }
    Ok((loader, checked, wg_checked))
}

/// The policy's loader: the `--policy` file, or under a control plane the bundle in force, and
/// that bundle's WireGuard peers and workload part. While this node runs the mesh, the peers'
/// addresses join the policy's `spec.peers`.
fn initial_policy(
    cfg: &RunConfig,
    remote: Option<&Remote>,
    mesh: bool,
) -> Result<(PolicyLoader, Option<Vec<Peer>>, BundleWorkloads), AgentError> {
    let Some(r) = remote else {
        let path = cfg
            .policy
            .clone()
            .ok_or_else(|| AgentError::Config(vec!["give --policy FILE or --control".into()]))?;
        let loader = PolicyLoader::new(PolicySource::File(path), cfg, Vec::new());
        return Ok((loader, None, BundleWorkloads::default()));
    };
    let update = BundleUpdate::of(&r.initial).map_err(|e| AgentError::Config(vec![e]))?;
    let loader = update.loader(&PolicyLoader::new(update.source.clone(), cfg, Vec::new()), mesh);
    Ok((loader, Some(update.peers), update.workloads))
}

/// Runs the preflight checks and the WireGuard checks (if asked for), merging every
/// configuration problem into one report.
fn check_all(
    cfg: &RunConfig,
    loader: &PolicyLoader,
    workloads: &BundleWorkloads,
    wg_cfg: Option<&WgConfig>,
) -> Result<(preflight::Checked, Option<wg::Validated>), AgentError> {
    let wg = wg_cfg.map(wg::check).transpose();
    let checked = preflight::check(cfg, loader, workloads);
    match (checked, wg) {
        (Ok(checked), Ok(wg)) => Ok((checked, wg)),
        (Err(AgentError::Config(mut errors)), Err(wg_errors)) => {
            errors.extend(wg_errors);
            Err(AgentError::Config(errors))
        }
        (Err(AgentError::NotRoot(euid)), Err(mut wg_errors)) => {
            wg_errors.push(AgentError::NotRoot(euid).to_string());
            Err(AgentError::Config(wg_errors))
        }
        (Ok(_), Err(wg_errors)) => Err(AgentError::Config(wg_errors)),
        (Err(e), _) => Err(e),
    }
}
