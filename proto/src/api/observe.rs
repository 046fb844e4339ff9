//! The live flow view (`GET /v1/observe`, `ringfence observe`): agents' events as flows, close
//! to Hubble's flow schema, and the filters the control plane applies before streaming them.
//!
//! A flow is derived from a stored event ([`Flow::from_event`]): verdict events (`deny`,
//! `audit-deny`, `allow`, `plaintext-drop`) and alerts (`exfiltration`, ...) keep what the agent
//! reported (process, cgroup, workload and labels, destination, country, policy and rule).

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::events::StoredEvent;

/// One side of a flow.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    /// The address (the destination's; the source's when the agent knows it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The workload (cgroup path under the agent's `--cgroup-root`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// Its labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u64>,
    /// Its command name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comm: Option<String>,
    /// Its cgroup id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_id: Option<u64>,
    /// The country the geo-IP database gives (destination).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

/// One flow record (a line of `ringfence observe -o json`: `{"flow": {...}}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Flow {
    /// When it happened on the node (RFC 3339).
    pub time: String,
    /// Unix ms of `time`.
    pub time_ms: i64,
    /// `FORWARDED` (allowed), `DROPPED` (denied, plaintext dropped), `AUDIT` (would be denied),
    /// `ALERT` (an alert, e.g. exfiltration).
    pub verdict: String,
    /// The event kind as the agent reported it (`deny`, `plaintext-drop`, `exfiltration`...).
    pub event_type: String,
    /// `EGRESS` or `INGRESS`.
    pub traffic_direction: String,
    /// Where it came from (the workload on the node, for egress).
    pub source: Endpoint,
    /// Where it went.
    pub destination: Endpoint,
    /// `TCP`, `UDP`, `ICMP`... when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// The policy that decided (its `metadata.name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The rule that decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// How many like it the agent aggregated into this event (denials: one record per key per 10 s).
    pub count: u64,
    /// The node id.
    pub node_id: String,
    /// The node's hostname, when it reported one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// The node's region.
    pub region: String,
    /// `info`, `warning`, `critical`.
    pub severity: String,
    /// One line for humans.
    pub summary: String,
    /// The event id (unique per node).
    pub event_id: String,
}

/// One line of the observe stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObserveLine {
    /// A flow.
    Flow(Box<Flow>),
    /// This many events were not delivered to this stream (it fell behind).
    LostEvents(u64),
}

fn text(details: &Value, key: &str) -> Option<String> {
    match details.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn number(details: &Value, key: &str) -> Option<u64> {
    details.get(key).and_then(Value::as_u64)
}

/// Labels as the agent sends them: `k=v,k2=v2`, or a JSON object.
pub fn parse_labels(value: Option<&Value>) -> BTreeMap<String, String> {
    match value {
        Some(Value::String(s)) => s
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect(),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// The flow verdict of an event kind.
pub fn flow_verdict(kind: &str) -> &'static str {
    match kind {
        "allow" => "FORWARDED",
        "audit-deny" => "AUDIT",
        "deny" | "plaintext-drop" | "socket-refused" | "exfiltration-block" => "DROPPED",
        _ => "ALERT",
    }
}

/// A Unix-ms time as RFC 3339 with milliseconds (UTC), without a date library.
pub fn rfc3339_ms(ms: i64) -> String {
    let (secs, millis) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl Flow {
    /// The flow of a stored event from a node in `region` named `node_name`.
    pub fn from_event(stored: &StoredEvent, region: &str, node_name: Option<&str>) -> Flow {
        let e = &stored.event;
        let d = &e.details;
        let kind = e.kind.as_str();
        let ingress = text(d, "hook").is_some_and(|h| h.contains("ingress"))
            || text(d, "direction").is_some_and(|x| x.eq_ignore_ascii_case("ingress"));
        let workload = Endpoint {
            workload: text(d, "workload"),
            labels: parse_labels(d.get("labels")),
            pid: number(d, "pid").filter(|p| *p != 0),
            comm: text(d, "comm"),
            cgroup_id: number(d, "cgroup_id"),
            ..Endpoint::default()
        };
        let remote = Endpoint {
            ip: text(d, "dst").or_else(|| text(d, "destination")),
            port: number(d, "port").and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0),
            country: text(d, "country"),
            ..Endpoint::default()
        };
        let (source, destination) = if ingress { (remote, workload) } else { (workload, remote) };
        Flow {
            time: rfc3339_ms(e.time_ms),
            time_ms: e.time_ms,
            verdict: flow_verdict(kind).to_owned(),
            event_type: e.kind.clone(),
            traffic_direction: if ingress { "INGRESS" } else { "EGRESS" }.to_owned(),
            source,
            destination,
            protocol: text(d, "protocol").map(|p| p.to_ascii_uppercase()),
            policy: text(d, "policy"),
            rule: text(d, "rule"),
            count: number(d, "count").unwrap_or(1).max(1),
            node_id: stored.node_id.clone(),
            node_name: node_name.map(str::to_owned),
            region: region.to_owned(),
            severity: e.severity.clone(),
            summary: e.summary.clone(),
            event_id: e.id.clone(),
        }
    }

    /// The workload side (the source of egress, the destination of ingress).
    pub fn workload_side(&self) -> &Endpoint {
        if self.traffic_direction == "INGRESS" {
            &self.destination
        } else {
            &self.source
        }
    }

    /// The remote side.
    pub fn remote_side(&self) -> &Endpoint {
        if self.traffic_direction == "INGRESS" {
            &self.source
        } else {
            &self.destination
        }
    }
}

/// `GET /v1/observe` query: every filter given must match.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObserveQuery {
    /// Only this node (id or hostname).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Only nodes of this region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Only workloads with these labels: `k=v,k2=v2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// Only this verdict: `deny` (policy denials), `dropped` (every DROPPED flow: denials,
    /// plaintext drops, refused sockets), `allow` (FORWARDED), `audit`, `alert`, or an event kind
    /// (`plaintext-drop`, `exfiltration`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    /// Only remote addresses in this CIDR (or this address), or in this country (two letters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Keep the stream open and send new flows as they arrive.
    #[serde(default)]
    pub follow: bool,
    /// How many stored flows to send first (newest, oldest first; default 20 when following, 100
    /// otherwise; at most 10,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<u32>,
}

/// Why a filter was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct FilterError(pub String);

/// A parsed [`ObserveQuery`], ready to match flows.
#[derive(Clone, Debug, Default)]
pub struct FlowFilter {
    node: Option<String>,
    region: Option<String>,
    labels: Vec<(String, String)>,
    verdict: Option<String>,
    to_net: Option<ipnet::IpNet>,
    to_country: Option<String>,
}

impl FlowFilter {
    /// Checks and parses the query's filters.
    pub fn new(q: &ObserveQuery) -> Result<FlowFilter, FilterError> {
        let mut labels = Vec::new();
        for item in q.workload.iter().flat_map(|w| w.split(',')).filter(|s| !s.trim().is_empty()) {
            let (k, v) = item
                .split_once('=')
                .filter(|(k, _)| !k.trim().is_empty())
                .ok_or_else(|| FilterError(format!("--workload {item:?}: expected KEY=VALUE")))?;
            labels.push((k.trim().to_owned(), v.trim().to_owned()));
        }
        let (mut to_net, mut to_country) = (None, None);
        if let Some(to) = q.to.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
            if let Ok(net) = to.parse::<ipnet::IpNet>() {
                to_net = Some(net);
            } else if let Ok(ip) = to.parse::<IpAddr>() {
                to_net = Some(ipnet::IpNet::from(ip));
            } else if to.len() == 2 && to.chars().all(|c| c.is_ascii_alphabetic()) {
                to_country = Some(to.to_ascii_uppercase());
            } else {
                return Err(FilterError(format!(
                    "--to {to:?}: expected a CIDR (203.0.113.0/24), an address or a two-letter country code"
                )));
            }
        }
        let verdict = q.verdict.as_deref().map(|v| v.trim().to_ascii_lowercase()).filter(|v| !v.is_empty());
        Ok(FlowFilter { node: q.node.clone(), region: q.region.clone(), labels, verdict, to_net, to_country })
    }

    /// The node filter (id or hostname).
    pub fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    /// Whether `flow` passes every filter.
    pub fn matches(&self, flow: &Flow) -> bool {
        if let Some(n) = &self.node {
            if flow.node_id != *n && flow.node_name.as_deref() != Some(n.as_str()) {
                return false;
            }
        }
        if self.region.as_ref().is_some_and(|r| *r != flow.region) {
            return false;
        }
        let labels = &flow.workload_side().labels;
        if !self.labels.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return false;
        }
        if let Some(v) = &self.verdict {
            let ok = match v.as_str() {
                "deny" | "denied" => flow.event_type == "deny",
                "drop" | "dropped" => flow.verdict == "DROPPED",
                "allow" | "allowed" | "forwarded" => flow.verdict == "FORWARDED",
                "audit" | "audit-deny" => flow.verdict == "AUDIT",
                "alert" => flow.verdict == "ALERT",
                kind => flow.event_type == kind,
            };
            if !ok {
                return false;
            }
        }
        let remote = flow.remote_side();
        if let Some(net) = &self.to_net {
            let ip = remote.ip.as_deref().and_then(|i| i.parse::<IpAddr>().ok());
            if !ip.is_some_and(|ip| net.contains(&ip)) {
                return false;
            }
        }
        if let Some(c) = &self.to_country {
            if remote.country.as_deref().map(str::to_ascii_uppercase).as_deref() != Some(c.as_str()) {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Event;
    use serde_json::json;

    fn stored(kind: &str, details: Value) -> StoredEvent {
        StoredEvent {
            node_id: "n1".into(),
            event: Event {
                id: "e1".into(),
                kind: kind.into(),
                time_ms: 1_780_000_000_123,
                severity: "warning".into(),
                summary: "s".into(),
                details,
            },
            received_ms: 1,
        }
    }

    #[test]
    fn deny_event_becomes_a_dropped_egress_flow_and_filters_apply() {
        let d = json!({"verdict": "deny", "rule": "no-exfil", "pid": 7, "comm": "python", "cgroup_id": 42,
            "dst": "203.0.113.5", "port": 443, "protocol": "tcp", "hook": "rf_connect4", "country": "CN",
            "policy": "job-eu", "workload": "job_1", "labels": "job=train,team=ml", "count": 3});
        let f = Flow::from_event(&stored("deny", d), "eu", Some("gpu-1"));
        assert_eq!((f.verdict.as_str(), f.traffic_direction.as_str(), f.count), ("DROPPED", "EGRESS", 3));
        assert_eq!(f.source.labels.get("team").map(String::as_str), Some("ml"));
        assert_eq!(f.destination.ip.as_deref(), Some("203.0.113.5"));
        assert_eq!((f.policy.as_deref(), f.rule.as_deref()), (Some("job-eu"), Some("no-exfil")));
        assert_eq!(f.time, "2026-05-28T20:26:40.123Z");
        let filter = |q: ObserveQuery| FlowFilter::new(&q).unwrap().matches(&f);
        assert!(filter(ObserveQuery { verdict: Some("deny".into()), ..Default::default() }));
        assert!(filter(ObserveQuery { verdict: Some("dropped".into()), ..Default::default() }));
        assert!(!filter(ObserveQuery { verdict: Some("allow".into()), ..Default::default() }));
        assert!(filter(ObserveQuery { to: Some("203.0.113.0/24".into()), ..Default::default() }));
        assert!(!filter(ObserveQuery { to: Some("198.51.100.0/24".into()), ..Default::default() }));
        assert!(filter(ObserveQuery { to: Some("cn".into()), ..Default::default() }));
        assert!(filter(ObserveQuery { workload: Some("team=ml".into()), ..Default::default() }));
        assert!(!filter(ObserveQuery { workload: Some("team=infra".into()), ..Default::default() }));
        assert!(filter(ObserveQuery {
            node: Some("gpu-1".into()),
            region: Some("eu".into()),
            ..Default::default()
        }));
        assert!(!filter(ObserveQuery { region: Some("us".into()), ..Default::default() }));
        assert!(FlowFilter::new(&ObserveQuery { to: Some("nowhere".into()), ..Default::default() }).is_err());
        let ingress = Flow::from_event(
            &stored("deny", json!({"hook": "rf_skb_ingress", "dst": "192.0.2.1"})),
            "eu",
            None,
        );
        assert_eq!(ingress.traffic_direction, "INGRESS");
        assert_eq!(ingress.source.ip.as_deref(), Some("192.0.2.1"));
        let alert =
            Flow::from_event(&stored("exfiltration", json!({"destination": "198.51.100.9"})), "eu", None);
        assert_eq!(
            (alert.verdict.as_str(), alert.destination.ip.as_deref()),
            ("ALERT", Some("198.51.100.9"))
        );
        let line = serde_json::to_string(&ObserveLine::Flow(Box::new(alert))).unwrap();
        assert!(line.starts_with("{\"flow\":{"), "{line}");
        assert_eq!(serde_json::to_string(&ObserveLine::LostEvents(5)).unwrap(), "{\"lost_events\":5}");
    }
}
