//! `run`, step 3: what runs beside the kernel programs: the WireGuard mesh, the metrics
//! endpoint, the exfiltration shell, the event reader and the [`Enforcer`] that ties them to
//! reloads; under a control plane, the first bundle is answered once all of it runs.
use std::sync::Arc;

use ipnet::IpNet;
use ringfence_policy::geo::GeoDb;
use tokio::{net::TcpListener, sync::watch};
use tracing::info;

use super::{attach::Attached, prepare::Prepared};
use crate::{
    control::VerdictLane,
    enforcer::Enforcer,
    error::AgentError,
    events::EventReader,
    exfil::ExfilShell,
    flows::FlowTable,
    metrics::{self, Metrics},
    policy_load::PolicySource,
    remote::Remote,
    watch::{Detect, FileWatch},
    wg,
};

/// The running agent, served by [`super::serve`] and stopped by [`super::stop`].
pub(super) struct Running {
    pub enforcer: Enforcer,
    pub mesh: Option<wg::Mesh>,
    pub remote: Option<Remote>,
    pub events: EventReader,
    pub flow_table: FlowTable,
    pub metrics: Arc<Metrics>,
    /// Stops the metrics endpoint.
    pub stop_metrics: watch::Sender<bool>,
}

/// What the node reports about its geo database: type and build date.
pub(super) fn geo_version(db: Option<&GeoDb>) -> Option<String> {
    db.map(|db| format!("{} {}", db.info().database_type, db.info().build_date()))
}

/// Starts everything around the attached programs.
pub(super) async fn start(p: Prepared, a: Attached) -> Result<Running, AgentError> {
    let Prepared { cfg, loader, checked, wg: wg_checked, queue: early_queue, mut remote } = p;
    let Attached { maps, generation, mut names, tracker } = a;
    names.insert(generation, Arc::new(checked.policy.clone()));
    if let (Some(r), Some(v)) = (&remote, &wg_checked) {
        r.report.lock().expect("report lock").wireguard = Some(ringfence_proto::api::WireGuardInfo {
            public_key: wg::pubkey(&v.cfg.state_dir)?,
            endpoint: v.cfg.endpoint.clone(),
            allowed_ips: v.addresses.iter().map(|a| IpNet::from(a.addr()).to_string()).collect(),
        });
    }
    let mut mesh = match wg_checked {
        Some(v) => Some(wg::Mesh::start(v).await?),
        None => None,
    };
    let metrics = Arc::new(Metrics::new());
    let (stop_metrics, metrics_stopped) = watch::channel(false);
    if let Some(addr) = cfg.metrics_listen {
        let listener =
            TcpListener::bind(addr).await.map_err(|e| AgentError::io("bind metrics", addr.to_string(), e))?;
        info!(%addr, "metrics: serving GET /metrics");
        let mut stopped = metrics_stopped.clone();
        tokio::spawn(metrics::serve(listener, metrics.clone(), async move {
            let _ = stopped.changed().await;
        }));
    }
    let queue = match &early_queue {
        Some(q) => q.clone(),
        None => super::prepare::open_queue(&cfg.state_dir)?,
    };
    let exfil =
        ExfilShell::open(&checked.policy, &cfg.bpffs, &cfg.state_dir, queue.clone(), metrics.clone())?;
    if let Some(r) = remote.as_mut() {
        r.report.lock().expect("report lock").geo_db_version = geo_version(checked.geo.as_ref());
        // In the report that follows the answer to the first bundle.
        r.set_workloads(tracker.as_ref().map(|t| t.report(Some(&checked.policy.name))));
        r.record_peers(&r.initial);
        r.started(Ok(())).await;
    }
    if exfil.active() {
        info!(poll_ms = cfg.exfil_poll.as_millis() as u64, "exfiltration detection on");
    }
    let flow_table = FlowTable::open(&cfg.bpffs)?;
    let events = EventReader::open(&cfg.bpffs)?;
    let mut enforcer = Enforcer {
        policy_watch: match &loader.source {
            PolicySource::File(path) => Some(FileWatch::new(path)),
            PolicySource::Bundle { .. } => None,
        },
        geo_watch: cfg.geoip_db.iter().map(|p| FileWatch::with(p, Detect::Metadata)).collect(),
        workload_policy_watch: cfg
            .workloads
            .iter()
            .flat_map(|w| w.policies.iter().map(|p| FileWatch::new(p)))
            .collect(),
        geo: checked.geo,
        cfg,
        loader,
        maps,
        names,
        generation,
        exfil,
        verdicts: early_queue.map(VerdictLane::new),
        workloads: tracker,
    };
    if let Some(mesh) = mesh.as_mut() {
        enforcer.sync_endpoints(mesh);
    }
    if let Some(t) = &enforcer.workloads {
        enforcer.exfil.set_workloads(t.named());
    }
    if let Some(r) = remote.as_ref() {
        r.set_workloads(enforcer.workload_report());
    }
    metrics.set_ready();
    Ok(Running { enforcer, mesh, remote, events, flow_table, metrics, stop_metrics })
}
