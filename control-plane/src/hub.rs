//! What bundles are rendered from, kept in memory: the nodes and the policy heads, reloaded when
//! the generation changes. Long-polls watch it through a `tokio::sync::watch` channel. A change
//! made on this replica reloads it directly; on PostgreSQL a listener reloads it on every
//! `NOTIFY` from any replica, and a periodic reload covers a lost listener connection.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Mutex};

use crate::db::{self, Backend, Db, DbError, NodeRow, PolicyRow};
use crate::heads::{Heads, WorkloadHead};

/// Everything bundles depend on, at one generation.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The generation it was loaded at.
    pub generation: i64,
    /// Every node, revoked ones included (their revocation changes their peers' bundles).
    pub nodes: Vec<NodeRow>,
    /// The newest node-default policy of each selector, newest first.
    pub policies: Vec<PolicyRow>,
    /// The newest version of each workload policy, newest first.
    pub workload_policies: Vec<WorkloadHead>,
    /// Every head's node selector and generation.
    head_generations: Vec<(ringfence_proto::api::Selector, i64)>,
    /// Node id → index in `nodes`.
    index: HashMap<String, usize>,
    /// Region → newest generation of its nodes.
    region_generation: HashMap<String, i64>,
}

impl Snapshot {
    /// A snapshot of these rows (policy heads newest first, see [`Heads::split`]), indexed.
    pub fn new(generation: i64, nodes: Vec<NodeRow>, policies: Vec<PolicyRow>) -> Snapshot {
        let Heads { defaults: policies, workloads: workload_policies, generations: head_generations } =
            Heads::split(policies);
        let index = nodes.iter().enumerate().map(|(i, n)| (n.info.node_id.clone(), i)).collect();
        let mut region_generation: HashMap<String, i64> = HashMap::new();
        for n in &nodes {
            let g = region_generation.entry(n.info.region.clone()).or_default();
            *g = (*g).max(n.generation);
        }
        Snapshot {
            generation,
            nodes,
            policies,
            workload_policies,
            head_generations,
            index,
            region_generation,
        }
    }

    /// The newest generation among the policies whose node selector matches this node (0: none).
    pub fn policies_generation(&self, region: &str, labels: &ringfence_proto::api::Labels) -> i64 {
        self.head_generations
            .iter()
            .filter(|(s, _)| s.matches(region, labels))
            .map(|(_, g)| *g)
            .max()
            .unwrap_or(0)
    }

    /// The node with this id.
    pub fn node(&self, id: &str) -> Option<&NodeRow> {
        self.index.get(id).map(|&i| &self.nodes[i])
    }

    /// The newest generation among the nodes of a region (revoked ones included).
    pub fn region_generation(&self, region: &str) -> i64 {
        self.region_generation.get(region).copied().unwrap_or(0)
    }

    /// Enrolled, unrevoked nodes.
    pub fn active_nodes(&self) -> impl Iterator<Item = &NodeRow> {
        self.nodes.iter().filter(|n| n.info.revoked_ms.is_none())
    }
}

/// The current snapshot and its reloading.
pub struct Hub {
    db: Db,
    tx: watch::Sender<Arc<Snapshot>>,
    reload_lock: Mutex<()>,
}

impl Hub {
    /// Loads the first snapshot.
    pub async fn new(db: Db) -> Result<Arc<Hub>, DbError> {
        let (tx, _) = watch::channel(Arc::new(Snapshot::default()));
        let hub = Arc::new(Hub { db, tx, reload_lock: Mutex::new(()) });
        hub.reload().await?;
        Ok(hub)
    }

    /// The current snapshot.
    pub fn current(&self) -> Arc<Snapshot> {
        self.tx.borrow().clone()
    }

    /// A receiver that wakes on every new snapshot.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.tx.subscribe()
    }

    /// Reloads from the database if the generation moved.
    pub async fn reload(&self) -> Result<(), DbError> {
        let _one_at_a_time = self.reload_lock.lock().await;
        let generation = self.db.generation().await?;
        if generation == self.tx.borrow().generation && generation != 0 {
            return Ok(());
        }
        // Read the generation first: rows committed later only make the snapshot newer, and the
        // notification of their commit triggers another reload.
        let nodes = db::nodes::list(self.db.pool()).await?;
        let policies = db::policies::heads(self.db.pool()).await?;
        self.tx.send_replace(Arc::new(Snapshot::new(generation, nodes, policies)));
        tracing::debug!(generation, "reloaded bundle inputs");
        Ok(())
    }

    /// Reloads on notifications from other replicas (PostgreSQL) and every `period`; runs
    /// until `shutdown` fires.
    pub async fn follow(self: Arc<Hub>, period: Duration, mut shutdown: watch::Receiver<bool>) {
        let mut listener = None;
        loop {
            if self.db.backend() == Backend::Postgres && listener.is_none() {
                match sqlx::postgres::PgListener::connect(self.db.url()).await {
                    Ok(mut l) => match l.listen(db::CHANGES_CHANNEL).await {
                        Ok(()) => {
                            listener = Some(l);
                            // Changes made while not listening.
                            self.reload_logged().await;
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot LISTEN for changes; retrying"),
                    },
                    Err(e) => tracing::warn!(error = %e, "cannot connect the change listener; retrying"),
                }
            }
            let notified = async {
                match listener.as_mut() {
                    Some(l) => l.recv().await.map(|_| ()),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(period) => self.reload_logged().await,
                result = notified => match result {
                    Ok(()) => self.reload_logged().await,
                    Err(e) => {
                        tracing::warn!(error = %e, "change listener failed; reconnecting");
                        listener = None;
                    }
                },
            }
        }
    }

    async fn reload_logged(&self) {
        if let Err(e) = self.reload().await {
            tracing::warn!(error = %e, "reloading bundle inputs failed");
        }
    }
}
