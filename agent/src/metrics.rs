//! The agent's metrics in the Prometheus text exposition format (0.0.4), and a minimal HTTP/1.1
//! endpoint serving them: `GET /metrics`, `GET /healthz`; one request per connection.
use std::{
    collections::BTreeMap,
    fmt::Write as _,
    future::Future,
    io,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// How long a client has to send its request head, and to take the response.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest request head accepted.
const MAX_HEAD: usize = 8 << 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

struct Family {
    kind: Kind,
    help: String,
    /// Rendered label set (`{a="x",b="y"}` or empty) → value.
    series: BTreeMap<String, f64>,
}

type Collector = Box<dyn Fn(&Metrics) + Send + Sync>;

/// A registry of counters and gauges, keyed by metric name and label set; share it in an `Arc`.
/// Label order is the caller's: use the same order for the same series.
#[derive(Default)]
pub struct Metrics {
    families: Mutex<BTreeMap<String, Family>>,
    collectors: Mutex<Vec<Collector>>,
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics::default()
    }

    /// Adds `by` to a counter (created at 0).
    pub fn inc_counter(&self, name: &str, help: &str, labels: &[(&str, &str)], by: u64) {
        self.update(Kind::Counter, name, help, labels, |v| *v += by as f64);
    }

    /// Sets a counter kept elsewhere (e.g. a kernel map total); it must only grow.
    pub fn set_counter(&self, name: &str, help: &str, labels: &[(&str, &str)], value: u64) {
        self.update(Kind::Counter, name, help, labels, |v| *v = value as f64);
    }

    pub fn set_gauge(&self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.update(Kind::Gauge, name, help, labels, |v| *v = value);
    }

    /// Forgets every series of `name`, e.g. before re-setting a snapshot whose label sets change.
    pub fn remove(&self, name: &str) {
        lock(&self.families).remove(name);
    }

    /// Runs `f` at every `render` (each scrape), before rendering, to set snapshot values. `f`
    /// must not call `add_collector`.
    pub fn add_collector(&self, f: impl Fn(&Metrics) + Send + Sync + 'static) {
        lock(&self.collectors).push(Box::new(f));
    }

    /// The text exposition: families by name, series by label set.
    pub fn render(&self) -> String {
        for f in lock(&self.collectors).iter() {
            f(self);
        }
        let mut out = String::new();
        for (name, fam) in lock(&self.families).iter() {
            let help = fam.help.replace('\\', "\\\\").replace('\n', "\\n");
            let kind = if fam.kind == Kind::Counter { "counter" } else { "gauge" };
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
            for (labels, v) in &fam.series {
                let _ = writeln!(out, "{name}{labels} {}", fmt_value(*v));
            }
        }
        out
    }

    fn update(&self, kind: Kind, name: &str, help: &str, labels: &[(&str, &str)], f: impl FnOnce(&mut f64)) {
        debug_assert!(valid_name(name, true), "bad metric name {name:?}");
        let mut families = lock(&self.families);
        let fam = families.entry(name.to_string()).or_insert_with(|| Family {
            kind,
            help: help.to_string(),
            series: BTreeMap::new(),
        });
        debug_assert_eq!(fam.kind, kind, "metric {name} used as both counter and gauge");
        if fam.kind == kind {
            f(fam.series.entry(label_set(labels)).or_insert(0.0));
        }
    }
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

fn label_set(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let mut out = String::from("{");
    for (i, (k, v)) in labels.iter().enumerate() {
        debug_assert!(valid_name(k, false) && !k.starts_with("__"), "bad label name {k:?}");
        debug_assert!(!labels[..i].iter().any(|(o, _)| o == k), "duplicate label {k:?}");
        let v = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
        let _ = write!(out, "{}{k}=\"{v}\"", if i > 0 { "," } else { "" });
    }
    out.push('}');
    out
}

fn fmt_value(v: f64) -> String {
    match v {
        v if v.is_nan() => "NaN".into(),
        f64::INFINITY => "+Inf".into(),
        f64::NEG_INFINITY => "-Inf".into(),
        v => v.to_string(),
    }
}

/// Serves `metrics` on `listener` until `shutdown` completes (connections in flight finish on
/// their own, bounded by the 2 s timeouts).
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, shutdown: impl Future<Output = ()>) {
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
        let metrics = metrics.clone();
        tokio::spawn(async move {
            if let Err(e) = respond(stream, &metrics).await {
                tracing::debug!(%peer, error = %e, "metrics endpoint: connection failed");
            }
        });
    }
}

async fn respond(mut stream: TcpStream, metrics: &Metrics) -> io::Result<()> {
    let head = tokio::time::timeout(IO_TIMEOUT, read_head(&mut stream))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no request head within 2 s"))??;
    let (status, content_type, body) = route(head.as_deref(), metrics);
    let allow = if status.starts_with("405") { "Allow: GET\r\n" } else { "" };
    let len = body.len();
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\n\
         Connection: close\r\n{allow}\r\n{body}"
    );
    tokio::time::timeout(IO_TIMEOUT, async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await?;
        // Read what the client still sends (a body, an oversized head) until it closes: closing
        // with unread data would reset the connection and could destroy the response.
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        Ok(())
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "response not taken within 2 s"))?
}

/// The request head before "\r\n\r\n"; `None` if the peer stopped early or sent more than 8 KiB.
async fn read_head(stream: &mut TcpStream) -> io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; MAX_HEAD];
    let mut len = 0;
    while len < MAX_HEAD {
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 {
            return Ok(None);
        }
        let from = len.saturating_sub(3);
        len += n;
        if let Some(i) = buf[from..len].windows(4).position(|w| w == b"\r\n\r\n") {
            buf.truncate(from + i);
            return Ok(Some(buf));
        }
    }
    Ok(None)
}

const PLAIN: &str = "text/plain; charset=utf-8";

/// Status, content type and body for a request head.
fn route(head: Option<&[u8]>, metrics: &Metrics) -> (&'static str, &'static str, String) {
    let line = head.and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| h.lines().next()).unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return ("400 Bad Request", PLAIN, "bad request\n".into());
    };
    if !version.starts_with("HTTP/1.") {
        return ("400 Bad Request", PLAIN, "bad request\n".into());
    }
    if method != "GET" {
        return ("405 Method Not Allowed", PLAIN, "method not allowed\n".into());
    }
    match target.split('?').next() {
        Some("/metrics") => ("200 OK", "text/plain; version=0.0.4; charset=utf-8", metrics.render()),
        Some("/healthz") => ("200 OK", PLAIN, "ok".into()),
        _ => ("404 Not Found", PLAIN, "not found\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> Metrics {
        let m = Metrics::new();
        let help = "Exfiltration alerts raised.";
        m.inc_counter("ringfence_exfil_alerts_total", help, &[("kind", "bulk"), ("action", "alert")], 2);
        m.inc_counter("ringfence_exfil_alerts_total", help, &[("kind", "bulk"), ("action", "alert")], 1);
        m.inc_counter(
            "ringfence_exfil_alerts_total",
            help,
            &[("kind", "checkpoint"), ("action", "block")],
            1,
        );
        m.set_gauge("ringfence_flows", "Flows tracked.", &[], 41.0);
        m.set_gauge("ringfence_flows", "Flows tracked.", &[], 42.0);
        m.set_gauge("ringfence_policy_age_seconds", "Seconds since the policy was applied.", &[], 1.5);
        m
    }

    #[test]
    fn renders_the_text_format() {
        assert_eq!(
            small().render(),
            "# HELP ringfence_exfil_alerts_total Exfiltration alerts raised.\n\
             # TYPE ringfence_exfil_alerts_total counter\n\
             ringfence_exfil_alerts_total{kind=\"bulk\",action=\"alert\"} 3\n\
             ringfence_exfil_alerts_total{kind=\"checkpoint\",action=\"block\"} 1\n\
             # HELP ringfence_flows Flows tracked.\n\
             # TYPE ringfence_flows gauge\n\
             ringfence_flows 42\n\
             # HELP ringfence_policy_age_seconds Seconds since the policy was applied.\n\
             # TYPE ringfence_policy_age_seconds gauge\n\
             ringfence_policy_age_seconds 1.5\n"
        );
    }

    #[test]
    fn escapes_label_values_and_help_and_runs_collectors() {
        let m = Metrics::new();
        m.set_gauge("g", "a \\ b\nc \"q\"", &[("path", "C:\\x\"y\"\nz")], f64::INFINITY);
        assert_eq!(
            m.render(),
            "# HELP g a \\\\ b\\nc \"q\"\n# TYPE g gauge\ng{path=\"C:\\\\x\\\"y\\\"\\nz\"} +Inf\n"
        );
        m.remove("g");
        m.add_collector(|m| m.inc_counter("scrapes_total", "Scrapes.", &[], 1));
        m.render();
        assert_eq!(
            m.render(),
            "# HELP scrapes_total Scrapes.\n# TYPE scrapes_total counter\nscrapes_total 2\n"
        );
    }

    #[test]
    #[should_panic(expected = "bad label name")]
    fn rejects_bad_label_names() {
        Metrics::new().set_gauge("g", "h", &[("bad-name", "v")], 1.0);
    }

    async fn get(addr: std::net::SocketAddr, request: &str) -> (String, String) {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let (head, body) = out.split_once("\r\n\r\n").expect("a response head");
        (head.to_string(), body.to_string())
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
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("Content-Type: text/plain; version=0.0.4"), "{head}");
        assert!(head.contains(&format!("Content-Length: {}\r\n", body.len())), "{head}");
        assert_eq!(body, metrics.render());

        let (head, body) = get(addr, "GET /healthz?x=1 HTTP/1.0\r\n\r\n").await;
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert_eq!(body, "ok");

        let (head, _) = get(addr, "GET /nope HTTP/1.1\r\n\r\n").await;
        assert!(head.starts_with("HTTP/1.1 404 Not Found\r\n"), "{head}");
        let (head, _) = get(addr, "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n").await;
        assert!(
            head.starts_with("HTTP/1.1 405 Method Not Allowed\r\n") && head.contains("Allow: GET"),
            "{head}"
        );
        let (head, _) = get(addr, &format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_HEAD))).await;
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");

        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(2), server).await.expect("serve stops").unwrap();
    }
}
