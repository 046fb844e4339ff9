//! The audit log: what is recorded, export as JSON lines, and verification that catches rows
//! edited or deleted directly in the database.

use reqwest::StatusCode;
use ringfence_proto::api::{AuditVerification, BundleAck, EventBatch};
use ringfence_proto::AuditRecord;

use crate::common::{policy_yaml, Backend, TestServer};

async fn export(server: &TestServer) -> Vec<AuditRecord> {
    let resp = server.admin_get("/v1/audit").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/x-ndjson");
    let text = resp.text().await.unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

async fn verify(server: &TestServer) -> AuditVerification {
    server.admin_get("/v1/audit/verify").await.json().await.unwrap()
}

async fn audit_chain_records_and_catches_edits(backend: Backend) {
    let server = TestServer::start(backend).await;
    let a = server.agent("eu", &[], "key-a").await;
    server.apply(&policy_yaml("p1", "198.51.100.0/24"), "region=eu").await;
    server.apply(&policy_yaml("p1", "203.0.113.0/24"), "region=eu").await;
    let bundle = a.poll(0, 5).await.unwrap().verify(&a.pinned, 0).unwrap();
    let ack = BundleAck {
        bundle_version: bundle.version,
        policy_version: bundle.policy_version,
        applied: true,
        error: None,
    };
    a.post("/v1/ack", &ack).await.unwrap();
    a.post("/v1/events", &EventBatch { events: vec![] }).await.unwrap();
    let records = export(&server).await;
    let actions: Vec<&str> = records.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(
        actions,
        ["token.create", "token.use", "node.enroll", "policy.apply", "policy.apply", "bundle.ack"]
    );
    assert_eq!(ringfence_proto::verify_chain(&records), Ok(6), "the export verifies offline");
    let second_apply = &records[4];
    assert_eq!(second_apply.actor, "admin:tester");
    assert_eq!(second_apply.details["previous_version"], 1);
    let diff = second_apply.details["diff"].as_str().unwrap();
    assert!(diff.contains("+    - {name: web, action: allow, to: {cidrs: [203.0.113.0/24]}}"), "{diff}");
    assert_eq!(second_apply.details["policy_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(records[2].details["node_id"], a.node_id.as_str());
    assert_eq!(
        verify(&server).await,
        AuditVerification { ok: true, records: 6, first_bad_seq: None, error: None }
    );

    // Delete a record behind the server's back.
    sqlx::query("DELETE FROM audit_log WHERE seq = 5").execute(server.db().pool()).await.unwrap();
    let v = verify(&server).await;
    assert_eq!((v.ok, v.first_bad_seq), (false, Some(5)), "{v:?}");
    assert!(v.error.as_deref().unwrap().contains("deleted"), "{v:?}");
    // Edit an earlier one.
    sqlx::query("UPDATE audit_log SET details = '{\"version\":1,\"author\":\"someone else\"}' WHERE seq = 4")
        .execute(server.db().pool())
        .await
        .unwrap();
    let v = verify(&server).await;
    assert_eq!((v.ok, v.first_bad_seq, v.records), (false, Some(4), 3), "{v:?}");
    assert!(v.error.as_deref().unwrap().contains("edited"), "{v:?}");
    server.stop().await;
}

crate::on_both_backends!(audit_chain_records_and_catches_edits);
