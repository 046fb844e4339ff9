//! Forwarding stored events to the operator's tools, best effort in a background task with
//! retries: Alertmanager (API v2 `POST /api/v2/alerts`), a generic JSON webhook, and syslog
//! (RFC 5424 over UDP). A full queue drops the event from forwarding (it stays stored).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use ringfence_proto::api::StoredEvent;
use serde_json::json;
use tokio::sync::mpsc;

use crate::metrics::{inc, Metrics};

/// Where events go.
#[derive(Clone, Debug, Default)]
pub struct Sinks {
    /// Alertmanager base URL.
    pub alertmanager: Option<url::Url>,
    /// Webhook URL.
    pub webhook: Option<url::Url>,
    /// Syslog server (UDP).
    pub syslog: Option<SocketAddr>,
}

/// Attempts per event and sink.
const ATTEMPTS: u32 = 4;
/// Events waiting to be forwarded, at most.
const QUEUE: usize = 10_000;

/// The sending side; cheap to clone.
#[derive(Clone)]
pub struct Forwarder {
    tx: Option<mpsc::Sender<StoredEvent>>,
    metrics: Arc<Metrics>,
}

impl Forwarder {
    /// Starts the background task (none when no sink is configured).
    pub fn start(sinks: Sinks, metrics: Arc<Metrics>) -> Forwarder {
        if sinks.alertmanager.is_none() && sinks.webhook.is_none() && sinks.syslog.is_none() {
            return Forwarder { tx: None, metrics };
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(sinks, rx, metrics.clone()));
        Forwarder { tx: Some(tx), metrics }
    }

    /// Queues an event; never waits.
    pub fn send(&self, event: StoredEvent) {
        if let Some(tx) = &self.tx {
            if tx.try_send(event).is_err() {
                inc(&self.metrics.alerts_failed);
                tracing::warn!("alert forwarding queue full; event not forwarded (it is stored)");
            }
        }
    }
}

/// Alertmanager v2 alert for an event.
pub fn alertmanager_alert(e: &StoredEvent) -> serde_json::Value {
    json!({
        "labels": {
            "alertname": format!("Ringfence{}", camel(&e.event.kind)),
            "source": "ringfence",
            "node": e.node_id,
            "kind": e.event.kind,
            "severity": e.event.severity,
        },
        "annotations": {
            "summary": e.event.summary,
            "event_id": e.event.id,
            "details": e.event.details.to_string(),
        },
        "startsAt": rfc3339(e.event.time_ms),
    })
}

fn camel(kind: &str) -> String {
    kind.split(['-', '_', '.'])
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_uppercase().chain(c).collect::<String>()).unwrap_or_default()
        })
        .collect()
}

fn rfc3339(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

fn sd_escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace(']', "\\]")
}

/// RFC 5424 message for an event (facility local0).
pub fn syslog_message(e: &StoredEvent, hostname: &str) -> String {
    let severity = match e.event.severity.as_str() {
        "critical" => 2,
        "warning" => 4,
        "info" => 6,
        _ => 5,
    };
    let pri = 16 * 8 + severity;
    let msgid: String = e.event.kind.chars().filter(|c| c.is_ascii_graphic()).take(32).collect();
    format!(
        "<{pri}>1 {} {hostname} ringfence-control - {} [ringfence@32473 node=\"{}\" id=\"{}\" kind=\"{}\"] {}",
        rfc3339(e.event.time_ms),
        if msgid.is_empty() { "-".into() } else { msgid },
        sd_escape(&e.node_id),
        sd_escape(&e.event.id),
        sd_escape(&e.event.kind),
        e.event.summary.replace('\n', " "),
    )
}

async fn post_json(client: &reqwest::Client, url: &str, body: &serde_json::Value) -> Result<(), String> {
    let response = client.post(url).json(body).send().await.map_err(|e| e.to_string())?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(format!("HTTP {}", response.status()))
    }
}

async fn deliver(
    sinks: &Sinks,
    client: &reqwest::Client,
    hostname: &str,
    e: &StoredEvent,
) -> Vec<(&'static str, Result<(), String>)> {
    let mut results = Vec::new();
    if let Some(base) = &sinks.alertmanager {
        let url = format!("{}/api/v2/alerts", base.as_str().trim_end_matches('/'));
        results.push(("alertmanager", post_json(client, &url, &json!([alertmanager_alert(e)])).await));
    }
    if let Some(url) = &sinks.webhook {
        let body = json!({"source": "ringfence-control", "event": e});
        results.push(("webhook", post_json(client, url.as_str(), &body).await));
    }
    if let Some(addr) = sinks.syslog {
        let bind: SocketAddr = if addr.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().expect("literal");
        let sent = async {
            let socket = tokio::net::UdpSocket::bind(bind).await?;
            socket.send_to(syslog_message(e, hostname).as_bytes(), addr).await
        }
        .await;
        results.push(("syslog", sent.map(|_| ()).map_err(|e| e.to_string())));
    }
    results
}

async fn run(sinks: Sinks, mut rx: mpsc::Receiver<StoredEvent>, metrics: Arc<Metrics>) {
    let client =
        reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("HTTP client builds");
    let hostname =
        std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_else(|_| "-".into());
    while let Some(event) = rx.recv().await {
        let mut remaining = sinks.clone();
        for attempt in 1..=ATTEMPTS {
            for (sink, result) in deliver(&remaining, &client, &hostname, &event).await {
                match result {
                    Ok(()) => {
                        inc(&metrics.alerts_forwarded);
                        match sink {
                            "alertmanager" => remaining.alertmanager = None,
                            "webhook" => remaining.webhook = None,
                            _ => remaining.syslog = None,
                        }
                    }
                    Err(error) => {
                        tracing::warn!(sink, error, attempt, event = %event.event.id, "forwarding an event failed")
                    }
                }
            }
            let left =
                [remaining.alertmanager.is_some(), remaining.webhook.is_some(), remaining.syslog.is_some()];
            let left = left.iter().filter(|l| **l).count();
            if left == 0 {
                break;
            }
            if attempt == ATTEMPTS {
                for _ in 0..left {
                    inc(&metrics.alerts_failed);
                }
            } else {
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringfence_proto::api::Event;

    fn event() -> StoredEvent {
        StoredEvent {
            node_id: "n-1".into(),
            event: Event {
                id: "e\"1".into(),
                kind: "plaintext-drop".into(),
                time_ms: 1_700_000_000_123,
                severity: "critical".into(),
                summary: "dropped plaintext to 198.51.100.7:443".into(),
                details: json!({"port": 443}),
            },
            received_ms: 0,
        }
    }

    #[test]
    fn alertmanager_format() {
        let a = alertmanager_alert(&event());
        assert_eq!(a["labels"]["alertname"], "RingfencePlaintextDrop");
        assert_eq!(a["labels"]["node"], "n-1");
        assert_eq!(a["startsAt"], "2023-11-14T22:13:20.123Z");
        assert_eq!(a["annotations"]["details"], "{\"port\":443}");
    }

    #[test]
    fn syslog_rfc5424() {
        let m = syslog_message(&event(), "cp1");
        assert_eq!(
            m,
            "<130>1 2023-11-14T22:13:20.123Z cp1 ringfence-control - plaintext-drop [ringfence@32473 node=\"n-1\" id=\"e\\\"1\" kind=\"plaintext-drop\"] dropped plaintext to 198.51.100.7:443"
        );
    }
}
