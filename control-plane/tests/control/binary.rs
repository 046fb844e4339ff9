//! The `ringfence-control` binary: configuration errors before anything starts (exit 64, every
//! error listed), first start creating its state, serving, and a clean stop on SIGTERM.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use crate::common::client;
use crate::common::metrics::scrape;
use crate::common::process::{ServerProcess, BIN};

#[test]
fn bad_configuration_exits_64_listing_every_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "localhost-ish",
            "--cert-ttl",
            "5h",
            "--db",
            "mysql://db/x",
            "--webhook-url",
            "nope",
        ])
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "error: --listen \"localhost-ish\"",
        "error: --cert-ttl 5h: at most 4h",
        "error: --db \"mysql://db/x\"",
        "error: --webhook-url \"nope\"",
        "4 configuration errors",
    ] {
        assert!(stderr.contains(needle), "{needle:?} missing in:\n{stderr}");
    }
    assert!(!dir.path().join("state").exists(), "nothing is created before the configuration is valid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_then_stops_on_sigterm() {
    // First start: state created (secrets 0600), default SQLite file in the state directory.
    let mut server = ServerProcess::start(&["--shutdown-grace", "2s"], None).await;
    let (state, ca, base) = (server.state.clone(), server.ca_pem.clone(), server.base.clone());
    for secret in ["admin.token", "ca.key", "bundle-signing.key"] {
        let mode = std::fs::metadata(state.join(secret)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{secret}");
    }
    assert!(state.join("control.db").exists(), "default database under the state directory");
    let metrics = scrape(&client(&ca, None), &base).await;
    assert!(metrics.contains("ringfence_longpoll_watchers 0"), "{metrics}");
    // TLS 1.2 is refused.
    let tls12 = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .max_tls_version(reqwest::tls::Version::TLS_1_2)
        .build()
        .unwrap();
    assert!(tls12.get(format!("{base}/healthz")).send().await.is_err(), "TLS 1.2 accepted");
    let exit = server.terminate(Duration::from_secs(10)).await;
    let log = server.log();
    assert_eq!(exit.code(), Some(0), "{log}");
    assert!(
        log.contains("admin credential") && log.contains("admin.token"),
        "the log names the credential file:\n{log}"
    );
    assert!(log.contains("SIGTERM received"), "{log}");
}
