//! `GET /v1/observe`: the live flow view. Stored events and the allow verdicts still in memory
//! ([`crate::flows::LIVE_RING`]) matching the filters (the newest `last`, oldest first), then,
//! with `follow=true`, new ones as they are stored or delivered, as JSON lines (`{"flow":
//! {...}}`, `{"lost_events": N}` when the stream fell behind). Filters are applied here, so a
//! stream carries only what the operator asked for.

use std::collections::HashSet;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use prometheus_client::metrics::counter::Counter;
use ringfence_proto::api::{Flow, FlowFilter, ObserveLine, ObserveQuery};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, watch};

use super::auth::{Admin, QueryArgs};
use super::error::{ApiError, ApiResult};
use super::state::AppState;
use crate::db;
use crate::flows::flow_of;

/// Stored events scanned for the backlog at most.
const SCAN: i64 = 50_000;
/// Flows written per chunk at most.
const CHUNK: usize = 512;

fn line(l: &ObserveLine, out: &mut Vec<u8>) {
    serde_json::to_writer(&mut *out, l).expect("observe lines serialize");
    out.push(b'\n');
}

/// The newest `last` stored flows that match, oldest first.
async fn backlog(state: &AppState, filter: &FlowFilter, last: usize) -> ApiResult<Vec<Flow>> {
    if last == 0 {
        return Ok(Vec::new());
    }
    let snapshot = state.hub.current();
    // A node named by hostname is looked up by id in the database.
    let node_id = filter.node().map(|n| {
        snapshot.nodes.iter().find(|r| r.info.hostname.as_deref() == Some(n)).map_or(n, |r| &r.info.node_id)
    });
    let mut out: Vec<Flow> = db::events::newest(state.db.pool(), node_id, SCAN)
        .await?
        .iter()
        .map(|e| flow_of(e, &snapshot))
        .filter(|f| filter.matches(f))
        .take(last)
        .collect();
    // Allow verdicts are not stored: the newest still in memory join the backlog.
    out.extend(state.flows.recent_live(last, |f| filter.matches(f)));
    // The newest `last` of both, oldest first, by when they happened on the nodes.
    let key = |f: &Flow| (f.time_ms, f.node_id.clone(), f.event_id.clone());
    out.sort_by_key(|f| std::cmp::Reverse(key(f)));
    out.truncate(last);
    out.reverse();
    Ok(out)
}

/// `GET /v1/observe`.
pub async fn observe(
    State(state): State<Arc<AppState>>,
    _: Admin,
    QueryArgs(q): QueryArgs<ObserveQuery>,
) -> ApiResult<Response> {
    let filter = FlowFilter::new(&q).map_err(|e| ApiError::bad_request(e.0))?;
    let last = q.last.unwrap_or(if q.follow { 20 } else { 100 }).min(10_000) as usize;
    // Subscribe before reading the backlog: nothing stored in between is missed (a flow in both
    // is sent once).
    let live = q.follow.then(|| state.flows.subscribe());
    let stored = backlog(&state, &filter, last).await?;
    let mut first = Vec::new();
    for f in &stored {
        line(&ObserveLine::Flow(Box::new(f.clone())), &mut first);
    }
    let headers = [("content-type", "application/x-ndjson"), ("cache-control", "no-store")];
    let Some(rx) = live else {
        return Ok((headers, first).into_response());
    };
    let seen: HashSet<(String, String)> = stored.into_iter().map(|f| (f.node_id, f.event_id)).collect();
    state.metrics.observe_streams.inc();
    let follow = Follow {
        rx,
        seen,
        filter,
        lost: state.metrics.observe_lost.clone(),
        shutdown: state.shutdown.clone(),
        _open: StreamGuard(state.metrics.observe_streams.clone()),
    };
    let first = (!first.is_empty()).then(|| Ok(Bytes::from(first)));
    let body =
        futures_util::stream::iter(first).chain(futures_util::stream::unfold(follow, |mut f| async move {
            let chunk = f.next_chunk().await?;
            Some((Ok::<_, std::convert::Infallible>(chunk), f))
        }));
    Ok((headers, Body::from_stream(body)).into_response())
}

/// A following stream's state.
struct Follow {
    rx: broadcast::Receiver<Arc<Flow>>,
    /// Flows already sent from the backlog (skipped once when they arrive live).
    seen: HashSet<(String, String)>,
    filter: FlowFilter,
    lost: Counter,
    shutdown: watch::Receiver<bool>,
    _open: StreamGuard,
}

impl Follow {
    /// Adds one received item to `out`; false when the bus closed.
    fn add(&mut self, item: Result<Arc<Flow>, RecvError>, out: &mut Vec<u8>) -> bool {
        match item {
            Ok(f) => {
                let repeat =
                    !self.seen.is_empty() && self.seen.remove(&(f.node_id.clone(), f.event_id.clone()));
                if !repeat && self.filter.matches(&f) {
                    line(&ObserveLine::Flow(Box::new((*f).clone())), out);
                }
                true
            }
            Err(RecvError::Lagged(n)) => {
                self.lost.inc_by(n);
                line(&ObserveLine::LostEvents(n), out);
                true
            }
            Err(RecvError::Closed) => false,
        }
    }

    /// The next non-empty chunk: what arrives first and whatever is queued behind it (up to
    /// [`CHUNK`] flows); `None` at shutdown.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        let mut out = Vec::new();
        loop {
            let item = tokio::select! {
                item = self.rx.recv() => item,
                _ = self.shutdown.changed() => return None,
            };
            if !self.add(item, &mut out) {
                return None;
            }
            for _ in 0..CHUNK {
                let item = match self.rx.try_recv() {
                    Ok(f) => Ok(f),
                    Err(TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
                    Err(_) => break,
                };
                self.add(item, &mut out);
            }
            if !out.is_empty() {
                return Some(Bytes::from(out));
            }
        }
    }
}

/// Counts an open stream while alive.
struct StreamGuard(prometheus_client::metrics::gauge::Gauge);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
