//! Exfiltration self-test results signed by the node that ran them: a real signed result is
//! stored, exported and verified offline; forged ones are kept as refused-result alerts, never as results; a result altered in
//! the pack fails `ringfence evidence verify` naming the file, even with the manifest re-signed
//! by the control plane's own evidence key (and, with the node CA pinned, even with a forged CA
//! in the pack).

use ringfence_cli::evidence::pack;
use ringfence_proto::api::{AlertList, Event, EventBatch};
use ringfence_proto::evidence::{Manifest, SELFTEST_RESULTS};
use ringfence_proto::selftest::{payload, sign, SignedResult};
use serde_json::{json, Value};

use crate::common::{Agent, Backend, Options, TestServer};
use crate::evidence::{export, fails_naming, repack, text, verify};

/// A self-test result as the agent reports it.
fn result(received: u64) -> Value {
    json!({
        "test": "exfil", "passed": true, "detected": true, "blocked": true, "budget": 1_048_576,
        "received": received, "bytes_past_budget": received as i64 - 1_048_576,
        "blocked_after_ms": 31.25, "latency_ms": 1.5, "reason": null,
    })
}

/// The event of `result`, carrying `signed` (if any).
fn event(id: &str, time_ms: i64, result: &Value, signed: Option<SignedResult>) -> Event {
    let mut details = json!({"id": id, "kind": "selftest", "unix_ms": time_ms, "result": result});
    if let Some(signed) = signed {
        details["signed"] = serde_json::to_value(signed).unwrap();
    }
    Event {
        id: id.into(),
        kind: "selftest".into(),
        time_ms,
        severity: "info".into(),
        summary: "exfiltration self-test passed".into(),
        details,
    }
}

/// `result` as event `id`, signed with `by`'s key and certificate.
fn signed_event(id: &str, result: &Value, by: (&str, &str)) -> Event {
    let now = ringfence_proto::now_ms();
    let signed = sign(payload(id, now as u64, result), by.0, by.1).unwrap();
    event(id, now, result, Some(signed))
}

/// A change to a stored self-test event's details.
type Edit = fn(&mut Value);

/// Posts a forged result: accepted (the node's spool moves on) but stored as a `refused-result`
/// alert saying why, never as a self-test result.
async fn refused(server: &TestServer, node: &Agent, event: Event, why: &str) {
    let id = event.id.clone();
    let resp = node.post("/v1/events", &EventBatch { events: vec![event] }).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap();
    assert!(status == 200 && body.contains(&id), "{why}: {status} {body}");
    let alerts: AlertList = server.admin_get("/v1/alerts?limit=100").await.json().await.unwrap();
    let stored = alerts.alerts.iter().find(|s| s.event.id == id).unwrap_or_else(|| panic!("{id} not stored"));
    assert_eq!(stored.event.kind, "refused-result", "{why}: {stored:?}");
    assert!(
        stored.event.summary.contains(why) && stored.event.details["refused_kind"] == "selftest",
        "{stored:?}"
    );
}

async fn selftest_results_are_signed_by_their_node(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = dir.path().join("checkpoints.jsonl");
    let extra = vec!["--checkpoint-file".into(), checkpoints.display().to_string()];
    let server = TestServer::start_with(backend, Options { extra, ..Options::default() }).await;
    let node = server.agent("eu", &[], "st-a").await;
    let other = server.agent("eu", &[], "st-b").await;
    let own = (node.key_pem.as_str(), node.cert_pem.as_str());

    // Forgeries are not results: each is a refused-result alert naming why.
    let genuine = signed_event("selftest-exfil-1", &result(1_040_000), own);
    // (Altered under an id of its own: a stored id is not stored again.)
    let mut altered = signed_event("selftest-exfil-0", &result(1_040_000), own);
    altered.details["result"]["received"] = json!(900_000);
    refused(&server, &node, altered, "differs from what its node signed").await;
    let mut replayed = genuine.clone();
    replayed.id = "selftest-exfil-2".into();
    refused(&server, &node, replayed, "differs from what its node signed (event id)").await;
    refused(&server, &node, event("selftest-exfil-3", 1, &result(1), None), "not signed by its node").await;
    let as_other = signed_event("selftest-exfil-4", &result(1), (&other.key_pem, &other.cert_pem));
    refused(&server, &node, as_other, &format!("signed with the certificate of node {}", other.node_id))
        .await;
    // A certificate naming the node, but not issued by this control plane.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, node.node_id.as_str());
    let self_signed = params.self_signed(&key).unwrap().pem();
    let fake = signed_event("selftest-exfil-5", &result(1), (&key.serialize_pem(), &self_signed));
    refused(&server, &node, fake, "not issued by the node CA").await;

    // The genuine result is stored, exported and verified offline.
    let resp = node.post("/v1/events", &EventBatch { events: vec![genuine] }).await.unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let pack_path = dir.path().join("pack.tar.zst");
    export(&server, &pack_path).await;
    let out = verify(&server, &pack_path).await;
    let said = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "verify: {said}{}", text(&out.stderr));
    assert!(
        said.contains("self-test results: 1 signed by their nodes (1 nodes; 1 passed, 0 failed)"),
        "{said}"
    );

    // Altered in the pack and re-signed with the evidence key itself: the node's signature fails.
    let files = pack::read(&pack_path).unwrap();
    let manifest: Manifest = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let state = ringfence_control::state_dir::load_or_create(&server.state_dir).unwrap();
    let tampered = dir.path().join("tampered.tar.zst");
    let original: Value = serde_json::from_slice(&files[SELFTEST_RESULTS]).unwrap();
    let edits: [(&str, Edit); 2] = [
        ("differs from what its node signed (result)", |d| d["result"]["received"] = json!(900_000)),
        ("the signature does not verify", |d| {
            let p = d["signed"]["payload"].as_str().unwrap().replace("1040000", "900000");
            d["signed"]["payload"] = json!(p);
            d["result"]["received"] = json!(900_000);
        }),
    ];
    // `replace` gives new texts for some files; the manifest lists their hashes and is re-signed.
    let resigned = |replace: &[(&str, Vec<u8>)]| {
        let mut m = manifest.clone();
        let mut copy = files.clone();
        for (path, bytes) in replace {
            let entry = m.files.iter_mut().find(|f| f.path == *path).unwrap();
            (entry.sha256, entry.bytes) = (ringfence_proto::evidence::sha256_hex(bytes), bytes.len() as u64);
            copy.insert((*path).into(), bytes.clone());
        }
        let (m_text, sig) = m.sign(&state.evidence_key);
        copy.insert("manifest.json".into(), m_text.into_bytes());
        copy.insert("manifest.sig".into(), format!("{sig}\n").into_bytes());
        repack(&tampered, &copy);
    };
    let json_bytes = |doc: &Value| (serde_json::to_string_pretty(doc).unwrap() + "\n").into_bytes();
    for (why, edit) in edits {
        let mut doc = original.clone();
        edit(&mut doc["results"][0]["details"]);
        resigned(&[(SELFTEST_RESULTS, json_bytes(&doc))]);
        fails_naming(&server, &tampered, SELFTEST_RESULTS, why).await;
        fails_naming(&server, &tampered, why, why).await;
    }
    // A forger with the evidence key and a CA of its own (a node certificate naming the node):
    // the pack is consistent, the pinned node CA refuses the signature.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let forged_ca = ca_params.self_signed(&ca_key).unwrap();
    let node_key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, node.node_id.as_str());
    let forged_cert = params.signed_by(&node_key, &forged_ca, &ca_key).unwrap().pem();
    let mut doc = original.clone();
    let d = &mut doc["results"][0]["details"];
    d["result"]["received"] = json!(900_000);
    let (id, at) =
        (doc["results"][0]["id"].as_str().unwrap(), doc["results"][0]["time_ms"].as_u64().unwrap());
    let forged = sign(
        payload(id, at, &doc["results"][0]["details"]["result"]),
        &node_key.serialize_pem(),
        &forged_cert,
    );
    doc["results"][0]["details"]["signed"] = serde_json::to_value(forged.unwrap()).unwrap();
    resigned(&[(SELFTEST_RESULTS, json_bytes(&doc)), ("keys/node-ca.pem", forged_ca.pem().into_bytes())]);
    fails_naming(&server, &tampered, SELFTEST_RESULTS, "a forged node CA").await;
    fails_naming(&server, &tampered, "not issued by the node CA", "a forged node CA").await;
    server.stop().await;
}

crate::on_both_backends!(selftest_results_are_signed_by_their_node);
