//! Problem 6 of the fleet-hardening issue: the audit log proves its tail. The control plane signs
//! checkpoints of the chain's head into an S3 Object Lock bucket of an S3 server started here
//! (moto, `cargo xtask setup` installs it) and a file; `ringfence audit verify --checkpoint`
//! catches deleted tail records, a rehashed chain and a rolled-back database, and a locked
//! checkpoint can be neither deleted nor overwritten.

use std::time::{Duration, Instant};

use ringfence_cli::{AuditCommand, CliError, OperatorCommand, ServerArgs};
use ringfence_proto::s3::S3;
use ringfence_proto::{AuditRecord, Checkpoint};
use sqlx::Row;

use crate::common::s3::Moto;
use crate::common::{policy_yaml, Backend, Options, TestServer};

const BUCKET: &str = "ringfence-audit";

async fn rows(server: &TestServer) -> Vec<AuditRecord> {
    let text = server.admin_get("/v1/audit").await.text().await.unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

async fn insert(server: &TestServer, records: &[AuditRecord]) {
    for r in records {
        ringfence_control::db::audit::insert(server.db().pool(), r).await.unwrap();
    }
}

async fn replace_log(server: &TestServer, records: &[AuditRecord]) {
    sqlx::query("DELETE FROM audit_log").execute(server.db().pool()).await.unwrap();
    insert(server, records).await;
}

async fn verify(server: &TestServer, s3_url: &str, sources: &[String]) -> Result<(), CliError> {
    let args = ServerArgs {
        server: server.base.clone(),
        ca: server.ca_path.clone(),
        admin_token_file: server.admin_token_path.clone(),
    };
    let command = AuditCommand::Verify {
        file: None,
        checkpoint: sources.to_vec(),
        checkpoint_key: server.state_dir.join("audit-checkpoint.pub"),
        s3_endpoint: Some(s3_url.to_owned()),
        s3_region: "us-east-1".into(),
    };
    ringfence_cli::run_operator(&args, OperatorCommand::Audit { command }).await
}

fn broken(result: Result<(), CliError>, needle: &str) {
    match result {
        Err(CliError::AuditBroken { reason, .. }) => {
            assert!(reason.contains(needle), "{needle:?} in {reason}")
        }
        other => panic!("expected the verification to fail ({needle}), got {other:?}"),
    }
}

/// Waits until the bucket holds a checkpoint of record `seq` or later.
async fn checkpoint_at(s3: &S3, key: &ed25519_dalek::VerifyingKey, seq: u64) -> Checkpoint {
    let started = Instant::now();
    loop {
        for (k, v) in s3.list_versions(BUCKET, "cp/", 50).await.unwrap() {
            let body = s3.get(BUCKET, &k, Some(&v)).await.unwrap();
            if let Ok(c) = Checkpoint::parse_verified(&String::from_utf8_lossy(&body), key) {
                if c.seq >= seq {
                    return c;
                }
            }
        }
        assert!(started.elapsed() < Duration::from_secs(15), "no checkpoint of record {seq} in the bucket");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn checkpoints_catch_tail_deletion_rehash_and_rollback(backend: Backend) {
    let moto = Moto::start();
    // The test's S3 credentials (moto accepts any; every test sets the same): for the server
    // and the CLI.
    std::env::set_var("AWS_ACCESS_KEY_ID", "ringfence-test");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "ringfence-test-secret");
    let s3 = S3::from_env(&url::Url::parse(&moto.url).unwrap(), "us-east-1").unwrap();
    s3.create_locked_bucket(BUCKET).await.expect("bucket with Object Lock");
    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("checkpoints.jsonl");
    let extra = vec![
        "--checkpoint-s3".into(),
        format!("s3://{BUCKET}/cp/"),
        "--checkpoint-s3-endpoint".into(),
        moto.url.clone(),
        "--checkpoint-s3-retention".into(),
        "1d".into(),
        "--checkpoint-file".into(),
        file.display().to_string(),
    ];
    let server = TestServer::start_with(backend, Options { extra, ..Default::default() }).await;
    let key_text = std::fs::read_to_string(server.state_dir.join("audit-checkpoint.pub")).unwrap();
    let key = ringfence_proto::parse_public_key(&key_text).unwrap();
    let sources = vec![format!("s3://{BUCKET}/cp/")];

    // Activity, then a policy change: a checkpoint of the head.
    let _a = server.agent("eu", &[], "node-a").await;
    server.apply(&policy_yaml("p1", "198.51.100.0/24"), "region=eu").await;
    let before_rollback = rows(&server).await;
    server.token("eu", &[], None).await;
    server.apply(&policy_yaml("p2", "203.0.113.0/24"), "region=eu").await;
    let log = rows(&server).await;
    let head = log.last().unwrap().seq;
    let checkpoint = checkpoint_at(&s3, &key, head).await;
    assert_eq!((checkpoint.seq, checkpoint.hash.as_str()), (head, log.last().unwrap().hash.as_str()));
    verify(&server, &moto.url, &sources).await.expect("the intact log matches its checkpoint");
    verify(&server, &moto.url, &[file.display().to_string()]).await.expect("the file sink has it too");

    // 1. The newest records deleted: the chain itself still verifies, the checkpoint does not.
    sqlx::query("DELETE FROM audit_log WHERE seq > $1")
        .bind(head as i64 - 2)
        .execute(server.db().pool())
        .await
        .unwrap();
    let plain = server
        .admin_get("/v1/audit/verify")
        .await
        .json::<ringfence_proto::api::AuditVerification>()
        .await
        .unwrap();
    assert!(plain.ok, "without a checkpoint a cut tail looks fine: {plain:?}");
    broken(verify(&server, &moto.url, &sources).await, "were deleted");
    broken(verify(&server, &moto.url, &[file.display().to_string()]).await, "were deleted");
    replace_log(&server, &log).await;
    verify(&server, &moto.url, &sources).await.expect("restored");

    // 2. A record edited and the whole chain after it rehashed.
    let mut rehashed: Vec<AuditRecord> = log[..2].to_vec();
    for r in &log[2..] {
        let prev = rehashed.last().map(|p| (p.seq, p.hash.as_str()));
        let details = if r.seq == 3 { serde_json::json!({"forged": true}) } else { r.details.clone() };
        rehashed.push(AuditRecord::next(prev, r.time_ms, &r.actor, &r.action, details));
    }
    assert_eq!(ringfence_proto::verify_chain(&rehashed), Ok(head), "a consistent forged chain");
    replace_log(&server, &rehashed).await;
    broken(verify(&server, &moto.url, &sources).await, "rewritten and rehashed");
    replace_log(&server, &log).await;

    // 3. The database rolled back to an older backup, then written again past the checkpoint.
    replace_log(&server, &before_rollback).await;
    broken(verify(&server, &moto.url, &sources).await, "rolled back");
    while rows(&server).await.len() as u64 <= head {
        server.token("eu", &[], None).await;
    }
    broken(verify(&server, &moto.url, &sources).await, "rolled back and written again");
    replace_log(&server, &log).await;

    // A locked checkpoint can be neither deleted nor overwritten.
    let versions = s3.list_versions(BUCKET, "cp/", 50).await.unwrap();
    let (k, v) = versions.first().cloned().expect("checkpoint objects");
    let original = s3.get(BUCKET, &k, Some(&v)).await.unwrap();
    let status = s3.delete_version(BUCKET, &k, &v).await.unwrap();
    assert!(status.is_client_error(), "deleting a locked version: {status}");
    s3.put_locked(
        BUCKET,
        &k,
        b"{\"forged\": true}".to_vec(),
        "GOVERNANCE",
        std::time::SystemTime::now() + Duration::from_secs(60),
    )
    .await
    .unwrap();
    assert_eq!(s3.get(BUCKET, &k, Some(&v)).await.unwrap(), original, "the locked version is unchanged");
    verify(&server, &moto.url, &sources)
        .await
        .expect("a forged newer version is ignored, the locked ones still prove the log");
    let row = sqlx::query("SELECT COUNT(*) FROM audit_log").fetch_one(server.db().pool()).await.unwrap();
    assert_eq!(row.try_get::<i64, _>(0).unwrap() as u64, head);
    server.stop().await;
    drop(moto);
}

/// The other sinks: each checkpoint is POSTed to the webhook and sent to syslog, signed.
async fn checkpoints_reach_webhook_and_syslog(backend: Backend) {
    use crate::common::receiver::{self, next};
    let (hook_url, mut hook) = receiver::http(0).await;
    let (syslog_addr, mut syslog) = receiver::udp().await;
    let extra = vec![
        "--checkpoint-webhook".into(),
        format!("{hook_url}/audit"),
        "--checkpoint-syslog".into(),
        syslog_addr,
    ];
    let server = TestServer::start_with(backend, Options { extra, ..Default::default() }).await;
    let key_text = std::fs::read_to_string(server.state_dir.join("audit-checkpoint.pub")).unwrap();
    let key = ringfence_proto::parse_public_key(&key_text).unwrap();
    let start = next(&mut hook, "webhook").await;
    assert_eq!(start.path, "/audit");
    let first = Checkpoint::parse_verified(&start.body.to_string(), &key).unwrap();
    assert_eq!((first.seq, first.reason.as_str()), (0, "start"));
    let line = next(&mut syslog, "syslog").await;
    assert!(line.contains(" ringfence-control - audit-checkpoint - {"), "{line}");
    server.apply(&policy_yaml("p1", "198.51.100.0/24"), "").await;
    let head = rows(&server).await.last().unwrap().seq;
    let changed = next(&mut hook, "webhook").await;
    let c = Checkpoint::parse_verified(&changed.body.to_string(), &key).unwrap();
    assert_eq!((c.seq, c.reason.as_str()), (head, "policy-change"));
    server.stop().await;
}

crate::on_both_backends!(
    checkpoints_catch_tail_deletion_rehash_and_rollback,
    checkpoints_reach_webhook_and_syslog
);
