//! The evidence pack: exported with the `ringfence` binary from a real server with enrolled
//! agents, policy changes, reports, events and a reporting gap; verified offline; and every kind
//! of file altered, added or removed makes verification fail naming it.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;

use ringfence_cli::evidence::pack;
use ringfence_proto::api::{EventBatch, NodeReport};
use ringfence_proto::evidence::Manifest;
use serde_json::Value;

use ringfence_proto::s3::S3;

use crate::common::s3::Moto;
use crate::common::{agent_event, policy_yaml, Backend, Options, TestServer};

const BUCKET: &str = "ringfence-evidence";

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub async fn verify(server: &TestServer, pack: &Path) -> Output {
    let key = server.state_dir.join("evidence-signing.pub");
    let cp = server.state_dir.join("audit-checkpoint.pub");
    let ca = server.state_dir.join("ca.pem");
    server
        .cli(&[
            "evidence",
            "verify",
            pack.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--checkpoint-key",
            cp.to_str().unwrap(),
            "--node-ca",
            ca.to_str().unwrap(),
        ])
        .await
}

/// Exports the pack from yesterday to tomorrow (UTC days) to `path`.
pub async fn export(server: &TestServer, path: &Path) {
    let today = ringfence_proto::api::rfc3339_ms(ringfence_proto::now_ms() - 86_400_000)[..10].to_owned();
    let tomorrow = ringfence_proto::api::rfc3339_ms(ringfence_proto::now_ms() + 86_400_000)[..10].to_owned();
    let out = server
        .cli(&["evidence", "export", "--from", &today, "--to", &tomorrow, "-o", path.to_str().unwrap()])
        .await;
    assert_eq!(out.status.code(), Some(0), "export: {}{}", text(&out.stdout), text(&out.stderr));
}

/// A copy of `files` written as a pack at `path`.
pub fn repack(path: &Path, files: &BTreeMap<String, Vec<u8>>) {
    let texts = files.iter().map(|(k, v)| (k.clone(), String::from_utf8(v.clone()).unwrap())).collect();
    pack::write(path, &texts, 0).unwrap();
}

pub async fn fails_naming(server: &TestServer, path: &Path, name: &str, what: &str) {
    let out = verify(server, path).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what}: verify must fail:\n{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let err = text(&out.stderr);
    assert!(
        err.contains("evidence pack verification FAILED") && err.contains(name),
        "{what}: {name} in {err}"
    );
}

async fn evidence_pack_exports_verifies_and_names_tampering(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = dir.path().join("checkpoints.jsonl");
    // Checkpoints go to a file and to an S3 Object Lock bucket (moto); the pack reads both back.
    let moto = Moto::start();
    std::env::set_var("AWS_ACCESS_KEY_ID", "ringfence-test");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "ringfence-test-secret");
    let s3 = S3::from_env(&url::Url::parse(&moto.url).unwrap(), "us-east-1").unwrap();
    s3.create_locked_bucket(BUCKET).await.expect("bucket with Object Lock");
    let extra = vec![
        "--checkpoint-file".into(),
        checkpoints.display().to_string(),
        "--checkpoint-s3".into(),
        format!("s3://{BUCKET}/cp/"),
        "--checkpoint-s3-endpoint".into(),
        moto.url.clone(),
    ];
    let server = TestServer::start_with(backend, Options { extra, ..Options::default() }).await;
    let eu = server.agent("eu", &[("gpu", "h100")], "ev-a").await;
    let us = server.agent("us", &[], "ev-b").await;
    server.apply(&policy_yaml("fleet", "198.51.100.0/24"), "").await;
    server.apply(&policy_yaml("fleet", "203.0.113.0/24"), "").await;
    for (agent, geo) in [(&eu, "GeoLite2-Country 2026-11-28"), (&us, "GeoLite2-Country 2026-11-21")] {
        let report = NodeReport {
            agent_version: Some("0.1.0-test".into()),
            applied_policy_version: Some(2),
            geo_db_version: Some(geo.into()),
            ..NodeReport::default()
        };
        assert_eq!(agent.post("/v1/report", &report).await.unwrap().status(), 204);
    }
    let batch = EventBatch {
        events: vec![
            agent_event("d1", "deny", "203.0.113.9", "job=train"),
            agent_event("p1", "plaintext-drop", "198.51.100.20", "job=train"),
            agent_event("x1", "exfiltration", "203.0.113.50", "job=train"),
        ],
    };
    assert_eq!(eu.post("/v1/events", &batch).await.unwrap().status(), 200);
    // A node silent for 10 minutes, then heard from again: an enforcement gap.
    let ten_minutes_ago = ringfence_proto::now_ms() - 600_000;
    sqlx::query("UPDATE nodes SET last_seen_ms = $1 WHERE id = $2")
        .bind(ten_minutes_ago)
        .bind(&us.node_id)
        .execute(server.db().pool())
        .await
        .unwrap();
    assert_eq!(us.get("/v1/bundle?after=999&wait=0").await.unwrap().status(), 204);
    // No checkpoint interval passes from here to the export (60 s): the export itself asks for
    // the checkpoint that anchors its audit segment.

    let pack_path = dir.path().join("pack.tar.zst");
    export(&server, &pack_path).await;
    let out = verify(&server, &pack_path).await;
    assert_eq!(out.status.code(), Some(0), "verify: {}{}", text(&out.stdout), text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.contains("evidence pack ok")
            && said.contains("(pinned)")
            && said.contains("intact, anchored by the checkpoint"),
        "{said}"
    );

    // What the pack holds.
    let files = pack::read(&pack_path).unwrap();
    let json =
        |p: &str| -> Value { serde_json::from_slice(&files[p]).unwrap_or_else(|e| panic!("{p}: {e}")) };
    let manifest: Manifest = serde_json::from_slice(&files["manifest.json"]).unwrap();
    for control in
        ["SC-7", "SC-7(10)", "SC-8", "AC-17", "AU-9", "CC6.6", "CC6.7", "CC7.2", "EU-AI-Act-55(1)(d)"]
    {
        assert!(!manifest.controls[control].evidence.is_empty(), "{control} has evidence");
    }
    let history = json("policies/history.json");
    assert_eq!(history["versions"].as_array().unwrap().len(), 2);
    assert_eq!(history["versions"][1]["applied_by"], "tester");
    assert!(text(&files["policies/diffs/v1-v2.diff"])
        .contains("+    - {name: web, action: allow, to: {cidrs: [203.0.113.0/24]}}"));
    let inventory = json("nodes/inventory.json");
    assert_eq!(inventory["nodes"].as_array().unwrap().len(), 2);
    let geo = json("nodes/geoip-versions.json");
    assert_eq!(geo["in_force_at_export"][&eu.node_id], "GeoLite2-Country 2026-11-28");
    assert_eq!(geo["changes"].as_array().unwrap().len(), 2, "{geo}");
    let gaps = json("nodes/enforcement-gaps.json");
    let gap = &gaps["gaps"][0];
    assert_eq!(
        (gap["node_id"].as_str(), gap["details"]["from_ms"].as_i64()),
        (Some(us.node_id.as_str()), Some(ten_minutes_ago)),
        "{gaps}"
    );
    let alerts = json("alerts/alerts.json");
    let kinds: Vec<&str> =
        alerts["alerts"].as_array().unwrap().iter().map(|a| a["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["plaintext-drop", "exfiltration"]);
    let selftest = json("selftest/results.json");
    assert!(
        selftest["results"].as_array().unwrap().is_empty()
            && selftest["note"].as_str().unwrap().contains("No exfiltration self-test")
    );
    let records = text(&files["audit/records.jsonl"]);
    assert!(records.contains("\"policy.apply\"") && records.contains("\"node.enroll\""), "{records}");
    let checkpoints_text = text(&files["audit/checkpoints.jsonl"]);
    assert!(checkpoints_text.contains("\"reason\":\"evidence-export\""), "{checkpoints_text}");
    let sources = json("audit/checkpoint-sources.json");
    let last = sources["checkpoints"].as_array().unwrap().last().unwrap().clone();
    let found_in: Vec<&str> =
        last["found_in"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(found_in.contains(&format!("s3://{BUCKET}/cp/").as_str()), "{sources}");
    assert!(found_in.iter().any(|f| f.starts_with("file:")), "{sources}");

    // Every kind of file altered, one at a time; then added, removed, and re-signed.
    let tampered = dir.path().join("tampered.tar.zst");
    for name in files.keys() {
        let mut copy = files.clone();
        let bytes = copy.get_mut(name).unwrap();
        match bytes.iter().position(|b| b.is_ascii_digit()) {
            Some(i) => bytes[i] = if bytes[i] == b'9' { b'8' } else { bytes[i] + 1 },
            None => bytes.extend_from_slice(b"x"),
        }
        repack(&tampered, &copy);
        fails_naming(&server, &tampered, name, &format!("{name} altered")).await;
    }
    let mut added = files.clone();
    added.insert("policies/v3.yaml".into(), b"apiVersion: forged\n".to_vec());
    repack(&tampered, &added);
    fails_naming(&server, &tampered, "policies/v3.yaml: added", "file added").await;
    for name in ["alerts/alerts.json", "audit/checkpoints.jsonl", "manifest.sig"] {
        let mut removed = files.clone();
        removed.remove(name);
        repack(&tampered, &removed);
        fails_naming(&server, &tampered, name, &format!("{name} removed")).await;
    }
    // Re-signed by a forger with another key: the pack is consistent, the pinned key refuses it.
    let forger = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let mut forged: Manifest = manifest.clone();
    forged.key_id = ringfence_proto::key_id(&forger.verifying_key());
    let (m_text, sig) = forged.sign(&forger);
    let mut resigned = files.clone();
    resigned.insert("manifest.json".into(), m_text.into_bytes());
    resigned.insert("manifest.sig".into(), format!("{sig}\n").into_bytes());
    repack(&tampered, &resigned);
    fails_naming(&server, &tampered, "not by the pinned evidence key", "re-signed").await;
    server.stop().await;
}

crate::on_both_backends!(evidence_pack_exports_verifies_and_names_tampering);
