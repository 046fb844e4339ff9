//! Flow charts: where traffic the agents reported went, by region and destination country,
//! per hour. Built from stored events (destination, country, bytes for exfiltration alerts,
//! counts for aggregated verdicts): agents do not upload their per-flow counters.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::principal::Reader;
use crate::api::auth::QueryArgs;
use crate::api::error::ApiResult;
use crate::api::state::AppState;
use crate::db::{self, event_queries::FlowDetails, event_queries::FlowEvent};

/// One chart bucket.
const BUCKET_MS: i64 = 3_600_000;
/// Most events read for one answer (the newest).
const MAX_EVENTS: i64 = 50_000;
/// Rows of the top-destinations table, and series in the chart.
const TOP: usize = 20;
const SERIES: usize = 8;

/// `?hours=N` (default 24, at most 168).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowsQuery {
    #[serde(default)]
    hours: Option<i64>,
}

/// Bytes and events.
#[derive(Clone, Copy, Default, Serialize)]
pub struct Volume {
    bytes: u64,
    events: u64,
}

impl Volume {
    fn add(&mut self, other: Volume) {
        self.bytes += other.bytes;
        self.events += other.events;
    }
}

/// A destination's total.
#[derive(Serialize)]
pub struct TopDestination {
    region: String,
    destination: String,
    country: String,
    #[serde(flatten)]
    volume: Volume,
}

/// One region/country's volume per bucket (bucket start, bytes, events).
#[derive(Serialize)]
pub struct Series {
    region: String,
    country: String,
    points: Vec<(i64, u64, u64)>,
}

/// `GET /console/api/flows`.
#[derive(Serialize)]
pub struct Flows {
    since_ms: i64,
    bucket_ms: i64,
    events_read: usize,
    top: Vec<TopDestination>,
    series: Vec<Series>,
}

fn volume(details: &FlowDetails) -> Volume {
    Volume { bytes: details.bytes.unwrap_or(0), events: details.count.unwrap_or(1) }
}

/// Aggregates `events` (pure, for tests).
pub fn aggregate(events: &[FlowEvent], since_ms: i64) -> Flows {
    let mut by_destination: HashMap<(String, String, String), Volume> = HashMap::new();
    let mut by_country: HashMap<(String, String), BTreeMap<i64, Volume>> = HashMap::new();
    for e in events {
        let Some(destination) = e.details.dst.clone().or_else(|| e.details.destination.clone()) else {
            continue;
        };
        let country = e.details.country.clone().unwrap_or_else(|| "??".into());
        let v = volume(&e.details);
        by_destination.entry((e.region.clone(), destination, country.clone())).or_default().add(v);
        let bucket = e.time_ms.div_euclid(BUCKET_MS) * BUCKET_MS;
        by_country.entry((e.region.clone(), country)).or_default().entry(bucket).or_default().add(v);
    }
    let mut top: Vec<TopDestination> = by_destination
        .into_iter()
        .map(|((region, destination, country), volume)| TopDestination {
            region,
            destination,
            country,
            volume,
        })
        .collect();
    top.sort_by(|a, b| {
        (b.volume.bytes, b.volume.events, &a.destination).cmp(&(
            a.volume.bytes,
            a.volume.events,
            &b.destination,
        ))
    });
    top.truncate(TOP);
    let total = |m: &BTreeMap<i64, Volume>| m.values().fold((0, 0), |(b, n), v| (b + v.bytes, n + v.events));
    let mut ranked: Vec<_> = by_country.into_iter().collect();
    ranked.sort_by_key(|(key, m)| (std::cmp::Reverse(total(m)), key.clone()));
    let mut series: Vec<Series> = ranked
        .into_iter()
        .map(|((region, country), m)| Series {
            region,
            country,
            points: m.into_iter().map(|(t, v)| (t, v.bytes, v.events)).collect(),
        })
        .collect();
    series.truncate(SERIES);
    Flows { since_ms, bucket_ms: BUCKET_MS, events_read: events.len(), top, series }
}

/// `GET /console/api/flows`.
pub async fn flows(
    State(state): State<Arc<AppState>>,
    _: Reader,
    QueryArgs(q): QueryArgs<FlowsQuery>,
) -> ApiResult<Json<Flows>> {
    let hours = q.hours.unwrap_or(24).clamp(1, 168);
    let since = ringfence_proto::now_ms() - hours * BUCKET_MS;
    let events = db::event_queries::since(state.db.pool(), since, MAX_EVENTS).await?;
    Ok(Json(aggregate(&events, since)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(region: &str, t: i64, details: serde_json::Value) -> FlowEvent {
        FlowEvent { region: region.into(), time_ms: t, details: serde_json::from_value(details).unwrap() }
    }

    #[test]
    fn destinations_ranked_by_bytes_and_bucketed_by_hour() {
        let events = [
            ev("eu", 10, json!({"dst": "203.0.113.5", "country": "CN", "count": 3})),
            ev("eu", BUCKET_MS + 1, json!({"destination": "203.0.113.9", "country": "CN", "bytes": 5000})),
            ev("us", 20, json!({"dst": "198.51.100.7"})),
            ev("us", 20, json!({"no": "destination"})),
        ];
        let f = aggregate(&events, 0);
        assert_eq!(f.top[0].destination, "203.0.113.9");
        assert_eq!(f.top[0].volume.bytes, 5000);
        assert_eq!(f.top[1].volume.events, 3);
        assert_eq!(f.top[2].country, "??");
        let cn = f.series.iter().find(|s| s.country == "CN").unwrap();
        assert_eq!(cn.points, vec![(0, 0, 3), (BUCKET_MS, 5000, 1)]);
    }
}
