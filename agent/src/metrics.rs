//! The agent's metrics, kept in a `prometheus-client` registry and served in the Prometheus text
//! exposition format (0.0.4) by a small HTTP/1.1 endpoint (hyper + an axum router):
//! `GET /metrics`, `GET /healthz`, `GET /readyz` (200 only once every hook, policy and workload
//! is in force: a Kubernetes readiness probe); one request per connection.
//!
//! Families are created on first use, by name: counters are named with their `_total` suffix
//! and help texts end with a period, as they appear in the exposition.
use std::{
    collections::HashMap,
    future::Future,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard,
    },
    time::Duration,
};

use axum::{extract::State, http::header, response::IntoResponse, routing::get, Router};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use prometheus_client::{
    encoding::prometheus_text,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use tokio::net::TcpListener;

/// How long a client has to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a whole connection (request head, response) may take.
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(4);

/// A label set in the caller's order.
type Labels = Vec<(String, String)>;

#[derive(Default)]
struct Families {
    registry: Registry,
    counters: HashMap<String, Family<Labels, Counter>>,
    gauges: HashMap<String, Family<Labels, Gauge<f64, AtomicU64>>>,
}

/// A registry of counters and gauges, keyed by metric name and label set; share it in an `Arc`.
/// Label order is the caller's: use the same order for the same series.
#[derive(Default)]
pub struct Metrics {
    families: Mutex<Families>,
    /// Set once the agent enforces (everything attached and started).
    ready: std::sync::atomic::AtomicBool,
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// Marks the agent as enforcing (`/readyz` answers 200 from now on).
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }

    /// Adds `by` to a counter (created at 0).
    pub fn inc_counter(&self, name: &str, help: &str, labels: &[(&str, &str)], by: u64) {
        self.counter(name, help, labels, |c| {
            c.inc_by(by);
        });
    }

    /// Sets a counter kept elsewhere (e.g. a kernel map total); it must only grow.
    pub fn set_counter(&self, name: &str, help: &str, labels: &[(&str, &str)], value: u64) {
        // The registry's counters only add; a total copied from the kernel replaces the value.
        self.counter(name, help, labels, |c| c.inner().store(value, Ordering::Relaxed));
    }

    pub fn set_gauge(&self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        let labels = label_set(labels);
        let mut families = lock(&self.families);
        let Families { registry, gauges, counters } = &mut *families;
        debug_assert!(!counters.contains_key(name), "metric {name} used as both counter and gauge");
        let family = gauges.entry(name.to_string()).or_insert_with(|| {
            debug_assert!(valid_name(name, true), "bad metric name {name:?}");
            let family = Family::default();
            registry.register(name, registry_help(name, help), family.clone());
            family
        });
        family.get_or_create(&labels).set(value);
    }

    /// The text exposition (0.0.4): families in the order they were first used.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_text::encode(&mut out, &lock(&self.families).registry)
            .expect("writing to a String does not fail");
        out
    }

    fn counter(&self, name: &str, help: &str, labels: &[(&str, &str)], f: impl FnOnce(&Counter)) {
        let labels = label_set(labels);
        let mut families = lock(&self.families);
        let Families { registry, gauges, counters } = &mut *families;
        debug_assert!(!gauges.contains_key(name), "metric {name} used as both counter and gauge");
        let family = counters.entry(name.to_string()).or_insert_with(|| {
            debug_assert!(valid_name(name, true), "bad metric name {name:?}");
            // The encoder appends `_total` to a counter's name.
            let base = name.strip_suffix("_total");
            debug_assert!(base.is_some(), "counter {name} must end in _total");
            let family = Family::default();
            registry.register(base.unwrap_or(name), registry_help(name, help), family.clone());
            family
        });
        f(&family.get_or_create(&labels));
    }
}

/// `help` as the registry takes it: the encoder appends the final period itself.
fn registry_help<'h>(name: &str, help: &'h str) -> &'h str {
    debug_assert!(help.ends_with('.'), "help of {name} must end with a period");
    help.strip_suffix('.').unwrap_or(help)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*` for metric names, without ':' for label names.
fn valid_name(s: &str, metric: bool) -> bool {
    let ok = |c: char, first: bool| {
        c.is_ascii_alphabetic() || c == '_' || (metric && c == ':') || (!first && c.is_ascii_digit())
    };
    s.chars().next().is_some_and(|c| ok(c, true)) && s.chars().all(|c| ok(c, false))
}

fn label_set(labels: &[(&str, &str)]) -> Labels {
    for (i, (k, _)) in labels.iter().enumerate() {
        debug_assert!(valid_name(k, false) && !k.starts_with("__"), "bad label name {k:?}");
        debug_assert!(!labels[..i].iter().any(|(o, _)| o == k), "duplicate label {k:?}");
    }
    labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// `GET /metrics`, `GET /healthz` and `GET /readyz`; other paths 404, other methods 405.
fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(metrics)
}

async fn readyz(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    match metrics.ready.load(Ordering::SeqCst) {
        true => (axum::http::StatusCode::OK, "enforcing"),
        false => (axum::http::StatusCode::SERVICE_UNAVAILABLE, "starting"),
    }
}

async fn render_metrics(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)], metrics.render())
}

/// Serves `metrics` on `listener` until `shutdown` completes (connections in flight finish on
/// their own, bounded by the connection timeout).
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, shutdown: impl Future<Output = ()>) {
    let app = router(metrics);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => return,
            r = listener.accept() => match r {
                Ok(conn) => conn,
                Err(e) => {
                    // E.g. EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "metrics endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEAD_TIMEOUT)
            .keep_alive(false)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        tokio::spawn(async move {
            match tokio::time::timeout(CONNECTION_TIMEOUT, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "metrics endpoint: connection failed"),
                Err(_) => tracing::debug!(%peer, "metrics endpoint: connection timed out"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpStream,
    };

    use super::*;

    fn small() -> Metrics {
        let m = Metrics::new();
        let help = "Exfiltration alerts raised.";
        m.inc_counter("ringfence_exfil_alerts_total", help, &[("kind", "bulk"), ("action", "alert")], 2);
        m.inc_counter("ringfence_exfil_alerts_total", help, &[("kind", "bulk"), ("action", "alert")], 1);
        m.set_gauge("ringfence_flows", "Flows tracked.", &[], 41.0);
        m.set_gauge("ringfence_flows", "Flows tracked.", &[], 42.0);
        m.set_gauge("ringfence_policy_age_seconds", "Seconds since the policy was applied.", &[], 1.5);
        m.set_counter("ringfence_events_dropped_total", "Events lost to a full ring buffer.", &[], 7);
        m
    }

    #[test]
    fn renders_the_text_format() {
        assert_eq!(
            small().render(),
            "# HELP ringfence_exfil_alerts_total Exfiltration alerts raised.\n\
             # TYPE ringfence_exfil_alerts_total counter\n\
             ringfence_exfil_alerts_total{kind=\"bulk\",action=\"alert\"} 3\n\
             # HELP ringfence_flows Flows tracked.\n\
             # TYPE ringfence_flows gauge\n\
             ringfence_flows 42.0\n\
             # HELP ringfence_policy_age_seconds Seconds since the policy was applied.\n\
             # TYPE ringfence_policy_age_seconds gauge\n\
             ringfence_policy_age_seconds 1.5\n\
             # HELP ringfence_events_dropped_total Events lost to a full ring buffer.\n\
             # TYPE ringfence_events_dropped_total counter\n\
             ringfence_events_dropped_total 7\n"
        );
    }

    #[test]
    fn counters_set_from_elsewhere_and_several_series() {
        let m = small();
        m.set_counter("ringfence_events_dropped_total", "Events lost to a full ring buffer.", &[], 9);
        m.inc_counter(
            "ringfence_exfil_alerts_total",
            "Exfiltration alerts raised.",
            &[("kind", "checkpoint"), ("action", "block")],
            1,
        );
        let text = m.render();
        // Series within a family come in no particular order.
        for line in [
            "ringfence_events_dropped_total 9",
            "ringfence_exfil_alerts_total{kind=\"bulk\",action=\"alert\"} 3",
            "ringfence_exfil_alerts_total{kind=\"checkpoint\",action=\"block\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        assert_eq!(text.matches("# TYPE ringfence_exfil_alerts_total counter\n").count(), 1, "{text}");
    }

    #[test]
    fn escapes_label_values_and_help() {
        let m = Metrics::new();
        m.set_gauge("g", "a \\ b\nc \"q\".", &[("path", "C:\\x\"y\"\nz")], f64::INFINITY);
        assert_eq!(
            m.render(),
            "# HELP g a \\\\ b\\nc \"q\".\n# TYPE g gauge\ng{path=\"C:\\\\x\\\"y\\\"\\nz\"} +Inf\n"
        );
    }

    #[test]
    #[should_panic(expected = "bad label name")]
    fn rejects_bad_label_names() {
        Metrics::new().set_gauge("g", "h.", &[("bad-name", "v")], 1.0);
    }

    async fn get(addr: std::net::SocketAddr, request: &str) -> (String, String) {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let (head, body) = out.split_once("\r\n\r\n").expect("a response head");
        (head.to_ascii_lowercase(), body.to_string())
    }

    #[tokio::test]
    async fn serves_metrics_health_and_errors() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(small());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, metrics.clone(), async move {
            let _ = stopped.await;
        }));

        let (head, body) = get(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
        assert!(head.contains("content-type: text/plain; version=0.0.4"), "{head}");
        assert!(head.contains(&format!("content-length: {}\r\n", body.len())), "{head}");
        assert_eq!(body, metrics.render());

        // What tests/src/scrape.rs sends: HTTP/1.0, no Host.
        let (head, body) = get(addr, "GET /healthz?x=1 HTTP/1.0\r\n\r\n").await;
        assert!(head.starts_with("http/1.0 200 ok\r\n"), "{head}");
        assert_eq!(body, "ok");
        let (head, _) = get(addr, "GET /readyz HTTP/1.0\r\n\r\n").await;
        assert!(head.starts_with("http/1.0 503 service unavailable\r\n"), "{head}");
        metrics.set_ready();
        let (head, body) = get(addr, "GET /readyz HTTP/1.0\r\n\r\n").await;
        assert!(head.starts_with("http/1.0 200 ok\r\n") && body == "enforcing", "{head}");

        let (head, _) = get(addr, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(head.starts_with("http/1.1 404 not found\r\n"), "{head}");
        let (head, _) = get(addr, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").await;
        assert!(
            head.starts_with("http/1.1 405 method not allowed\r\n") && head.contains("allow: get"),
            "{head}"
        );
        let (head, _) = get(addr, "GET /metrics BAD\r\n\r\n").await;
        assert!(head.starts_with("http/1.1 400 bad request\r\n"), "{head}");

        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(2), server).await.expect("serve stops").unwrap();
    }

    #[tokio::test]
    async fn closes_a_connection_without_a_request_head() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener, Arc::new(Metrics::new()), std::future::pending()));
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\n").await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(CONNECTION_TIMEOUT + Duration::from_secs(1), s.read_to_end(&mut out))
            .await
            .expect("the endpoint gives up on a slow client")
            .ok();
        server.abort();
    }
}
