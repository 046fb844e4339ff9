//! Fleet posture (every node's state, counted per region) and one node's page (workloads,
//! policy, WireGuard peers, last events). What nodes reported (acks, last seen) is read from
//! the database; what they should run from the in-memory snapshot (it is not reloaded for
//! acks).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use ringfence_proto::api::NodeInfo;
use serde::Serialize;

use super::principal::Reader;
use crate::api::auth::PathArg;
use crate::api::error::{ApiError, ApiResult};
use crate::api::state::AppState;
use crate::db::{self, event_queries::AlertFilter, event_queries::AlertView};
use crate::hub::Snapshot;
use crate::render;

/// A node not heard from for this long is stale (agents long-poll, so they call at least every
/// `--long-poll-max`; last-seen has a minute's resolution).
pub const STALE_AFTER_MS: i64 = 5 * 60_000;
/// Last events on a node's page.
const NODE_EVENTS: i64 = 50;

/// One node's posture.
#[derive(Serialize)]
pub struct NodePosture {
    node_id: String,
    region: String,
    hostname: Option<String>,
    /// `enforcing`, `degraded`, `stale` or `revoked`.
    status: &'static str,
    /// Why it is not `enforcing`.
    reason: Option<String>,
    applied_policy_version: Option<u64>,
    expected_policy_version: Option<u64>,
    applied_bundle_version: Option<u64>,
    expected_bundle_version: u64,
    cert_not_after_ms: i64,
    geo_db_version: Option<String>,
    last_seen_ms: Option<i64>,
    agent_version: Option<String>,
}

fn posture(snapshot: &Snapshot, info: &NodeInfo, now: i64) -> NodePosture {
    let expected = render::policy_for(snapshot, &info.region, &info.labels).map(|p| p.record.version);
    let (status, reason) = if info.revoked_ms.is_some() {
        ("revoked", None)
    } else if info.last_seen_ms.is_none_or(|seen| now - seen > STALE_AFTER_MS) {
        ("stale", Some("not heard from in 5 minutes".to_owned()))
    } else if info.cert_not_after_ms <= now {
        ("degraded", Some("client certificate expired".to_owned()))
    } else if expected.is_some() && info.applied_policy_version != expected {
        let applied = info.applied_policy_version.map_or("none".into(), |v| format!("v{v}"));
        ("degraded", Some(format!("policy {applied} applied, v{} expected", expected.unwrap_or_default())))
    } else {
        ("enforcing", None)
    };
    NodePosture {
        node_id: info.node_id.clone(),
        region: info.region.clone(),
        hostname: info.hostname.clone(),
        status,
        reason,
        applied_policy_version: info.applied_policy_version,
        expected_policy_version: expected,
        applied_bundle_version: info.applied_bundle_version,
        expected_bundle_version: render::bundle_version(snapshot, &info.node_id),
        cert_not_after_ms: info.cert_not_after_ms,
        geo_db_version: info.geo_db_version.clone(),
        last_seen_ms: info.last_seen_ms,
        agent_version: info.agent_version.clone(),
    }
}

/// `GET /console/api/fleet`.
#[derive(Serialize)]
pub struct Fleet {
    now_ms: i64,
    /// Region → status → count.
    regions: BTreeMap<String, BTreeMap<&'static str, usize>>,
    nodes: Vec<NodePosture>,
}

/// `GET /console/api/fleet`.
pub async fn fleet(State(state): State<Arc<AppState>>, _: Reader) -> ApiResult<Json<Fleet>> {
    let snapshot = state.hub.current();
    let now = ringfence_proto::now_ms();
    let rows = db::nodes::list(state.db.pool()).await?;
    let nodes: Vec<NodePosture> = rows.iter().map(|n| posture(&snapshot, &n.info, now)).collect();
    let mut regions: BTreeMap<String, BTreeMap<&'static str, usize>> = BTreeMap::new();
    for n in &nodes {
        *regions.entry(n.region.clone()).or_default().entry(n.status).or_default() += 1;
    }
    Ok(Json(Fleet { now_ms: now, regions, nodes }))
}

/// `GET /console/api/nodes/{id}`.
#[derive(Serialize)]
pub struct NodePage {
    posture: NodePosture,
    info: NodeInfo,
    policy_name: Option<String>,
    workload_policies: Vec<(String, u64)>,
    peers: Vec<ringfence_proto::Peer>,
    events: Vec<AlertView>,
}

/// `GET /console/api/nodes/{id}`.
pub async fn node(
    State(state): State<Arc<AppState>>,
    _: Reader,
    PathArg(id): PathArg<String>,
) -> ApiResult<Json<NodePage>> {
    let snapshot = state.hub.current();
    let row = db::nodes::get(state.db.pool(), &id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no node {id}")))?;
    let info = &row.info;
    let policy = render::policy_for(&snapshot, &info.region, &info.labels);
    let workload_policies = render::workload_policies_for(&snapshot, &info.region, &info.labels)
        .map(|w| (w.row.record.name.clone(), w.row.record.version))
        .collect();
    let peers = render::render(&snapshot, &id).map(|b| b.peers).unwrap_or_default();
    let filter = AlertFilter { node: id.clone(), limit: NODE_EVENTS, ..AlertFilter::default() };
    let events = db::event_queries::alerts(state.db.pool(), &filter).await?;
    Ok(Json(NodePage {
        posture: posture(&snapshot, info, ringfence_proto::now_ms()),
        info: info.clone(),
        policy_name: policy.map(|p| p.record.name.clone()),
        workload_policies,
        peers,
        events,
    }))
}
