//! The `ringfence` operator commands, run as the built binary against a real server.

use std::process::Output;

use ringfence_proto::api::TokenResponse;

use crate::common::cli::run;
use crate::common::{policy_yaml, wg, Agent, Backend, TestServer};

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(out: &Output) -> String {
    assert_eq!(out.status.code(), Some(0), "stdout: {}\nstderr: {}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_workflow_through_the_cli() {
    let server = TestServer::start(Backend::Sqlite).await;
    // token create → enroll with it.
    let out = server
        .cli(&["token", "create", "--region", "eu", "--labels", "gpu=h100", "--ttl", "10m", "--json"])
        .await;
    let token: TokenResponse = serde_json::from_str(&ok(&out)).unwrap();
    assert_eq!(token.labels.get("gpu").map(String::as_str), Some("h100"));
    let agent = Agent::enroll(&server, &token.token, Some(wg("key-cli"))).await.unwrap();
    // Plain output is the token alone on stdout.
    let plain = ok(&server.cli(&["token", "create", "--region", "us"]).await);
    assert!(plain.trim().starts_with("rfj_") && plain.lines().count() == 1, "{plain}");
    // nodes (list is the default).
    let nodes = ok(&server.cli(&["nodes"]).await);
    assert!(nodes.starts_with("NODE"), "{nodes}");
    assert!(
        nodes.contains(&agent.node_id) && nodes.contains("gpu=h100") && nodes.contains("active"),
        "{nodes}"
    );
    for column in ["HOSTNAME", "REGION", "LABELS", "CERT EXPIRES", "BUNDLE", "LAST SEEN"] {
        assert!(nodes.lines().next().unwrap().contains(column), "{column} in {nodes}");
    }
    assert!(nodes.contains("test-host") && nodes.contains("10.77.0.1/32"), "{nodes}");
    // policy apply (from a file) → the agent gets it.
    let dir = tempfile::tempdir().unwrap();
    let v1 = dir.path().join("v1.yaml");
    let v2 = dir.path().join("v2.yaml");
    std::fs::write(&v1, policy_yaml("cli", "198.51.100.0/24")).unwrap();
    std::fs::write(&v2, policy_yaml("cli", "203.0.113.0/24")).unwrap();
    let applied = ok(&server
        .cli(&[
            "policy",
            "apply",
            v1.to_str().unwrap(),
            "--selector",
            "region=eu,gpu=h100",
            "--author",
            "alice",
        ])
        .await);
    assert!(applied.contains("as version 1 for region=eu,gpu=h100"), "{applied}");
    assert!(applied.contains(&agent.node_id), "{applied}");
    let bundle = agent.poll(0, 5).await.unwrap().verify(&agent.pinned, 0).unwrap();
    assert!(bundle.policy_yaml.contains("198.51.100.0/24"));
    ok(&server.cli(&["policy", "apply", v2.to_str().unwrap(), "--selector", "region=eu,gpu=h100"]).await);
    let diff = ok(&server.cli(&["policy", "diff", "1", "2"]).await);
    assert!(diff.contains("-    - {name: web, action: allow, to: {cidrs: [198.51.100.0/24]}}"), "{diff}");
    assert!(diff.contains("+    - {name: web, action: allow, to: {cidrs: [203.0.113.0/24]}}"), "{diff}");
    let rolled = ok(&server.cli(&["policy", "rollback", "1", "--author", "bob"]).await);
    assert!(rolled.contains("rolled back to version 1") && rolled.contains("as version 3"), "{rolled}");
    let history = ok(&server.cli(&["policy", "history"]).await);
    let lines: Vec<&str> = history.lines().collect();
    assert!(lines[0].starts_with("VERSION"), "{history}");
    assert!(
        lines[1].starts_with("3 ") && lines[1].contains("bob") && lines[1].contains("rollback to 1"),
        "{history}"
    );
    assert!(lines[3].starts_with("1 ") && lines[3].contains("alice"), "{history}");
    let latest = agent.poll(bundle.version, 5).await.unwrap().verify(&agent.pinned, bundle.version).unwrap();
    assert_eq!(latest.policy_version, 3);
    // A selector that matches no enrolled node: a warning, or with --strict a refusal.
    let out = server.cli(&["policy", "apply", v1.to_str().unwrap(), "--selector", "region=nowhere"]).await;
    ok(&out);
    assert!(
        text(&out.stderr).contains("warning: selector region=nowhere matches no enrolled node"),
        "{}",
        text(&out.stderr)
    );
    let strict = ["policy", "apply", v1.to_str().unwrap(), "--selector", "region=nowhere", "--strict"];
    let out = server.cli(&strict).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("matches no enrolled node; nothing stored"), "{}", text(&out.stderr));
    let json = ok(&server.cli(&["policy", "rollback", "2", "--json"]).await);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!((v["policy"]["rollback_of"].as_u64(), v["policy"]["version"].as_u64()), (Some(2), Some(5)));
    // An invalid policy: every diagnostic as FILE:LINE:COL, exit 64.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "apiVersion: ringfence.dev/v1\nkind: EgressPolicy\nmetadata: {name: x}\nspec:\n  defaultAction: maybe\n  egress: []\n  extra: 1\n").unwrap();
    let out = server.cli(&["policy", "apply", bad.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(64), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:5:", bad.display()))
            && stderr.contains(&format!("{}:7:", bad.display())),
        "{stderr}"
    );
    // Alerts.
    let event = serde_json::json!({"events": [{"id": "a1", "kind": "deny", "time_ms": 1_780_000_000_000i64, "summary": "denied 192.0.2.1:443"}]});
    agent.post("/v1/events", &event).await.unwrap();
    let alerts = ok(&server.cli(&["alerts"]).await);
    assert!(alerts.contains("denied 192.0.2.1:443") && alerts.contains(&agent.node_id), "{alerts}");
    // Audit: export and verify, then an edit behind the server's back is caught.
    let exported = dir.path().join("audit.jsonl");
    ok(&server.cli(&["audit", "export", "-o", exported.to_str().unwrap()]).await);
    let lines = std::fs::read_to_string(&exported).unwrap();
    assert!(lines.lines().count() >= 8 && lines.contains("\"action\":\"policy.rollback\""), "{lines}");
    let verified = ok(&server.cli(&["audit", "verify"]).await);
    assert!(verified.starts_with("audit log ok:"), "{verified}");
    sqlx::query("UPDATE audit_log SET actor = 'mallory' WHERE seq = 3")
        .execute(server.db().pool())
        .await
        .unwrap();
    let out = server.cli(&["audit", "verify"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("FAILED at record 3"), "{}", text(&out.stderr));
    // The earlier export still verifies offline.
    ok(&server.cli(&["audit", "verify", "--file", exported.to_str().unwrap()]).await);
    // Revoke.
    let revoked = ok(&server.cli(&["nodes", "revoke", &agent.node_id]).await);
    assert!(revoked.starts_with(&format!("revoked {}", agent.node_id)), "{revoked}");
    assert_eq!(
        agent.get("/v1/bundle?after=0&wait=0").await.unwrap().status(),
        reqwest::StatusCode::FORBIDDEN
    );
    let out = server.cli(&["nodes", "revoke", "n-unknown"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no node n-unknown"), "{}", text(&out.stderr));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_say_what_to_do() {
    let server = TestServer::start(Backend::Sqlite).await;
    // Environment variables stand in for the flags.
    let env = [
        ("RINGFENCE_CA", server.ca_path.display().to_string()),
        ("RINGFENCE_ADMIN_TOKEN_FILE", server.admin_token_path.display().to_string()),
    ];
    let mut args = vec!["--server".to_owned(), server.base.clone(), "nodes".into(), "--json".into()];
    let out = run(args.clone(), &env).await;
    assert_eq!(ok(&out).trim(), "{\n  \"nodes\": []\n}");
    // Wrong credential.
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong.token");
    std::fs::write(&wrong, "0".repeat(64)).unwrap();
    args.extend(["--admin-token-file".into(), wrong.display().to_string()]);
    let out = run(args, &env).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("refused the admin credential")
            && text(&out.stderr).contains("--admin-token-file"),
        "{}",
        text(&out.stderr)
    );
    // Nothing listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("https://127.0.0.1:{port}");
    let out = run(vec!["--server".into(), url.clone(), "policy".into(), "history".into()], &env).await;
    assert_eq!(out.status.code(), Some(69));
    let stderr = text(&out.stderr);
    assert!(stderr.contains(&format!("cannot reach the control plane at {url}")), "{stderr}");
    assert!(stderr.contains("is `ringfence-control serve` running? pass --server"), "{stderr}");
    // Bad arguments.
    let out = run(
        vec![
            "--server".into(),
            server.base.clone(),
            "token".into(),
            "create".into(),
            "--region".into(),
            "eu".into(),
            "--ttl".into(),
            "soon".into(),
        ],
        &env,
    )
    .await;
    assert_eq!(out.status.code(), Some(64));
    assert!(text(&out.stderr).contains("--ttl \"soon\""), "{}", text(&out.stderr));
    // Completions.
    let out = run(vec!["completions".into(), "bash".into()], &[]).await;
    let script = ok(&out);
    assert!(script.contains("_ringfence()") && script.contains("rollback"), "bash completion");
    server.stop().await;
}
