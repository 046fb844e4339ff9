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
