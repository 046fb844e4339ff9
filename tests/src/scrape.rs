//! Reading an HTTP endpoint (the agent's Prometheus metrics) from inside a lab namespace, with
//! bash's `/dev/tcp` so nothing needs installing, and picking one series out of the text.
use crate::NetNs;

/// `GET path` over HTTP/1.0 to `addr` (`ip:port`) from inside `ns`: the raw response.
pub fn http_get(ns: &NetNs, addr: &str, path: &str) -> String {
    let (host, port) = addr.rsplit_once(':').unwrap_or_else(|| panic!("{addr}: expected IP:PORT"));
    let script =
        format!("exec 3<>/dev/tcp/{host}/{port}; printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3");
    let out = ns.exec(&["bash", "-c", &script]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value of `series` (a name with its labels, e.g. `up{job="x"}`) in a Prometheus text
/// exposition.
pub fn prometheus_value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The value of `series` scraped from `http://addr/metrics` inside `ns` (0 when absent).
pub fn metric(ns: &NetNs, addr: &str, series: &str) -> f64 {
    prometheus_value(&http_get(ns, addr, "/metrics"), series).unwrap_or(0.0)
}

/// Waits until `series` grew by `n` from now: e.g. `ringfence_exfil_polls_total`, so that a
/// "nothing happened" check follows polls that would have seen it. Panics after `timeout`.
pub fn wait_for_increase(ns: &NetNs, addr: &str, series: &str, n: f64, timeout: std::time::Duration) {
    let target = metric(ns, addr, series) + n;
    let deadline = std::time::Instant::now() + timeout;
    while metric(ns, addr, series) < target {
        assert!(std::time::Instant::now() < deadline, "{series} did not grow by {n} within {timeout:?}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::prometheus_value;

    #[test]
    fn picks_the_exact_series() {
        let text = "# TYPE a counter\na_total{k=\"x\"} 3\na_total 7\nab 9\n";
        assert_eq!(prometheus_value(text, "a_total{k=\"x\"}"), Some(3.0));
        assert_eq!(prometheus_value(text, "a_total"), Some(7.0));
        assert_eq!(prometheus_value(text, "a"), None, "a prefix of another name is not the series");
    }
}
