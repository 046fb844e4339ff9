//! Every agent metric the Prometheus rules and Grafana dashboards in `deploy/` reference is in a
//! real agent's `/metrics`: the agent enforces a lab cgroup with the packet path and exfiltration
//! detection, and one small upload over the bulk threshold makes it raise an alert (the alert
//! counters exist only after one). Run as root, serially.
use std::time::Duration;

use ringfence_tests::deploy_metrics::{missing, AGENT_JOB};
use ringfence_tests::scrape::{http_get, wait_for_increase};
use ringfence_tests::{policy_head_with, Enforced};

const METRICS_ADDR: &str = "127.0.0.1:9471";
/// An unapproved destination in the lab's world.
const ELSEWHERE: &str = "203.0.113.5";

#[test]
fn deploy_files_reference_only_real_agent_metrics() {
    let exfil = "  exfiltration:\n    bulk: { bytes: 1MB, window: 10m }\n";
    let policy = policy_head_with("deploy-metrics", "enforce", "allow", exfil)
        + "    - name: everything\n      action: allow\n      to: { cidrs: [0.0.0.0/0, \"::/0\"] }\n";
    let mut e = Enforced::prepare_with_hosts("deploy-metrics", &[], &[443], &policy);
    e.packet_path = true;
    let state = e.dir().join("state");
    e.agent_args.extend(["--state-dir".into(), state.into(), "--metrics-listen".into(), METRICS_ADDR.into()]);
    e.start_agent();
    e.lab.probe(&["tcp", ELSEWHERE, "443", "--bytes", "3000000"]).assert_ok("a 3 MB upload");
    let series = "ringfence_exfil_alerts_total{kind=\"bulk\",action=\"alert\"}";
    wait_for_increase(e.lab.node_ns(), METRICS_ADDR, series, 1.0, Duration::from_secs(20));
    let text = http_get(e.lab.node_ns(), METRICS_ADDR, "/metrics");
    let absent = missing(AGENT_JOB, &text);
    assert!(absent.is_empty(), "referenced by deploy/ but not in the agent's /metrics: {absent:?}\n{text}");
    assert!(text.contains("\nringfence_hooks_attached "), "{text}");
}
