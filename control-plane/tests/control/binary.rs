//! The `ringfence-control` binary: configuration errors before anything starts (exit 64, every
//! error listed), first start creating its state, serving, and a clean stop on SIGTERM.

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::client;

const BIN: &str = env!("CARGO_BIN_EXE_ringfence-control");

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
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--shutdown-grace", "2s"])
        .arg("--state-dir")
        .arg(&state)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // First start: state created (secrets 0600), default SQLite file in the state directory.
    let started = Instant::now();
    let ca = loop {
        if let Ok(pem) = std::fs::read_to_string(state.join("ca.pem")) {
            let c = client(&pem, None);
            if let Ok(resp) = c.get(format!("https://127.0.0.1:{port}/healthz")).send().await {
                assert_eq!(resp.text().await.unwrap(), "ok\n");
                break pem;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(20), "server did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for secret in ["admin.token", "ca.key", "bundle-signing.key"] {
        let mode = std::fs::metadata(state.join(secret)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{secret}");
    }
    assert!(state.join("control.db").exists(), "default database under the state directory");
    let metrics = client(&ca, None)
        .get(format!("https://127.0.0.1:{port}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("ringfence_longpoll_watchers 0"), "{metrics}");
    // TLS 1.2 is refused.
    let tls12 = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .max_tls_version(reqwest::tls::Version::TLS_1_2)
        .build()
        .unwrap();
    assert!(tls12.get(format!("https://127.0.0.1:{port}/healthz")).send().await.is_err(), "TLS 1.2 accepted");
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let stopping = Instant::now();
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(stopping.elapsed() < Duration::from_secs(10), "no exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut log = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut log).unwrap();
    assert_eq!(exit.code(), Some(0), "{log}");
    assert!(
        log.contains("admin credential") && log.contains("admin.token"),
        "the log names the credential file:\n{log}"
    );
    assert!(log.contains("SIGTERM received"), "{log}");
}
