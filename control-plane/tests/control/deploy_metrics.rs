//! The Prometheus rules and Grafana dashboards in `deploy/` parse, pass `promtool check rules`
//! (Debian's `prometheus` package, installed by `cargo xtask setup`), and every control-plane
//! metric they reference is in the real server's `/metrics` once it has nodes and events.

use ringfence_proto::api::EventBatch;
use ringfence_tests::deploy_metrics::{missing, promtool_check, CONTROL_JOB};

use crate::common::{agent_event, Backend, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_files_reference_only_real_control_plane_metrics() {
    match promtool_check() {
        Some(Ok(text)) => assert!(text.contains("SUCCESS"), "{text}"),
        Some(Err(text)) => panic!("promtool check rules failed:\n{text}"),
        None => ringfence_tests::skip(
            "deploy_files_reference_only_real_control_plane_metrics (promtool part)",
            "promtool is not installed (`cargo xtask setup` installs Debian's prometheus package); the rules were checked structurally only",
        ),
    }
    let server = TestServer::start(Backend::Sqlite).await;
    let agent = server.agent("eu", &[], "dm-a").await;
    let events = vec![
        agent_event("d1", "deny", "203.0.113.9", "team=ml"),
        agent_event("x1", "exfiltration", "203.0.113.50", "team=ml"),
    ];
    assert_eq!(agent.post("/v1/events", &EventBatch { events }).await.unwrap().status(), 200);
    let text = server.metrics().await;
    let absent = missing(CONTROL_JOB, &text);
    assert!(
        absent.is_empty(),
        "referenced by deploy/ but not in the control plane's /metrics: {absent:?}\n{text}"
    );
    server.stop().await;
}
