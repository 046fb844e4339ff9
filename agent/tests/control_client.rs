//! The agent's control-plane client against the real control plane (in-process, SQLite):
//! enrollment, bundles through `run_sync` with acknowledgements, refusal of tampered and older
//! bundles, event upload with deduplication, certificate renewal, and a control-plane outage.

#[path = "control_client/harness.rs"]
mod harness;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use harness::{eventually, policy_yaml, wg, Logs, Server, Storage};
use ringfence_agent::control::{
    self, enroll, link, run_sync, AgentEnd, ApplyResult, BundleStore, ControlClient, ControlError, Identity,
    SyncOptions,
};
use ringfence_agent::spool::{EventQueue, Spool, SpoolLimits};
use ringfence_proto::api::NodeReport;
use ringfence_proto::{Bundle, BundleError};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::instrument::WithSubscriber;

const LONG: Duration = Duration::from_secs(20);

/// An enrolled node: its state directory and identity.
struct Node {
    state: tempfile::TempDir,
    identity: Identity,
}

async fn enrolled(server: &Server) -> Node {
    let state = tempfile::tempdir().unwrap();
    let token = server.token("eu").await;
    let identity = enroll(&server.base, &token, &server.ca_path, state.path(), "host-a", Some(wg("wg-a")))
        .await
        .unwrap_or_else(|e| panic!("enroll: {e}"));
    Node { state, identity }
}

fn fast() -> SyncOptions {
    SyncOptions {
        report_every: Duration::from_secs(1),
        backoff_max: Duration::from_secs(2),
        ..SyncOptions::default()
    }
}

struct Sync {
    end: AgentEnd,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    client: ControlClient,
    /// What `run_sync` logged.
    logs: Logs,
}

fn start_sync(node: &Node, opts: SyncOptions, events: Option<EventQueue>) -> Sync {
    let client = ControlClient::new(node.identity.clone()).unwrap();
    let mut store = BundleStore::for_identity(&node.identity).unwrap();
    store.load_last().unwrap();
    let report = Arc::new(|| NodeReport { geo_db_version: Some("geo-test-1".into()), ..Default::default() });
    let (link, end) = link(events, report);
    let (stop, shutdown) = watch::channel(false);
    let logs = Logs::default();
    let task =
        tokio::spawn(run_sync(client.clone(), store, opts, link, shutdown).with_subscriber(logs.dispatch()));
    Sync { end, stop, task, client, logs }
}

impl Sync {
    async fn next_bundle(&mut self) -> Bundle {
        tokio::time::timeout(LONG, self.end.bundles.recv()).await.expect("a bundle in time").unwrap()
    }

    async fn stop(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(3), self.task).await.expect("run_sync stops").unwrap();
    }
}

fn spool_record(id: &str) -> serde_json::Value {
    json!({"id": id, "type": "exfiltration", "unix_ms": 1_780_000_000_000u64, "kind": "bulk",
           "severity": "critical", "destination": "203.0.113.9", "bytes": 9000,
           "explanation": format!("alert {id}: 9000 bytes to 203.0.113.9")})
}

fn spool_with(dir: &Path, ids: &[&str]) {
    let mut spool = Spool::open(dir, SpoolLimits::default()).unwrap();
    ids.iter().for_each(|id| spool.append(&spool_record(id)).unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrollment_is_one_time_and_saved() {
    let server = Server::start(None).await;
    let token = server.token("eu").await;
    let state = tempfile::tempdir().unwrap();
    let id = enroll(&server.base, &token, &server.ca_path, state.path(), "host-a", Some(wg("wg-a")))
        .await
        .unwrap();
    assert!(id.node_id().starts_with("n-") && id.meta.region == "eu", "{:?}", id.meta);
    let loaded = Identity::load(state.path()).unwrap();
    assert_eq!((loaded.meta, loaded.cert_pem), (id.meta.clone(), id.cert_pem.clone()));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(state.path().join("control/node.key")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let node = server.node(id.node_id()).await;
    assert_eq!(node.wireguard.unwrap().public_key, harness::wg_key("wg-a"));
    // The same token again, for another node: refused by the control plane.
    let other = tempfile::tempdir().unwrap();
    let err = enroll(&server.base, &token, &server.ca_path, other.path(), "host-b", None).await.unwrap_err();
    assert!(
        matches!(&err, ControlError::Refused { status: 403, message, .. } if message.contains("already used")),
        "{err}"
    );
    assert!(matches!(Identity::load(other.path()), Err(ControlError::NotEnrolled { .. })));
    // This node again: refused locally.
    let fresh = server.token("eu").await;
    let err = enroll(&server.base, &fresh, &server.ca_path, state.path(), "host-a", None).await.unwrap_err();
    assert!(matches!(err, ControlError::AlreadyEnrolled { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_flow_through_run_sync_and_acks_reach_the_inventory() {
    let server = Server::start(None).await;
    let node = enrolled(&server).await;
    let yaml = policy_yaml("first", "198.51.100.0/24");
    server.apply(&yaml, "region=eu").await;
    let mut sync = start_sync(&node, fast(), None);
    let bundle = sync.next_bundle().await;
    assert_eq!(
        (bundle.policy_yaml.as_str(), bundle.node_id.as_str()),
        (yaml.as_str(), node.identity.node_id())
    );
    assert_eq!(bundle.policy_version, 1);
    sync.end.results.send(ApplyResult::applied(&bundle)).await.unwrap();
    let id = node.identity.node_id().to_owned();
    let info = eventually("the ack in the inventory", LONG, || async {
        let n = server.node(&id).await;
        (n.applied_bundle_version == Some(bundle.version) && n.geo_db_version.is_some()).then_some(n)
    })
    .await;
    assert_eq!(info.applied_policy_version, Some(1));
    assert_eq!(info.geo_db_version.as_deref(), Some("geo-test-1"), "the report callback's state");
    // A bundle the agent fails to apply is acknowledged as such and not kept as the last good one.
    server.apply(&policy_yaml("second", "203.0.113.0/24"), "region=eu").await;
    let second = sync.next_bundle().await;
    assert!(second.version > bundle.version && second.policy_version == 2);
    sync.end.results.send(ApplyResult::failed(&second, "kernel said no")).await.unwrap();
    let ack = eventually("the failure acknowledged", LONG, || async {
        server.acks(&id).await.into_iter().find(|a| a["bundle_version"] == second.version)
    })
    .await;
    assert_eq!((&ack["applied"], &ack["error"]), (&json!(false), &json!("kernel said no")));
    assert_eq!(server.node(&id).await.applied_bundle_version, Some(bundle.version));
    sync.stop().await;
    let mut store = BundleStore::for_identity(&node.identity).unwrap();
    assert_eq!(store.load_last().unwrap(), Some(bundle.clone()), "the last good bundle is on disk");
    // Restarted, the agent is sent the bundle it has not applied yet.
    let mut again = start_sync(&node, fast(), None);
    assert_eq!(again.next_bundle().await.version, second.version);
    again.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_stored_bundle_and_rollback_are_refused() {
    let server = Server::start(None).await;
    let node = enrolled(&server).await;
    let client = ControlClient::new(node.identity.clone()).unwrap();
    server.apply(&policy_yaml("first", "198.51.100.0/24"), "region=eu").await;
    let old = client.bundle(0, Duration::from_secs(5)).await.unwrap().expect("first bundle");
    let mut store = BundleStore::for_identity(&node.identity).unwrap();
    let first = store.accept(&old).unwrap();
    server.apply(&policy_yaml("second", "203.0.113.0/24"), "region=eu").await;
    let new = client.bundle(first.version, Duration::from_secs(5)).await.unwrap().expect("second bundle");
    let second = store.accept(&new).unwrap();
    let err = store.accept(&old).unwrap_err();
    assert!(
        matches!(err, ControlError::BundleRefused(BundleError::Rollback { version, last }) if version == first.version && last == second.version),
        "{err}"
    );
    // Someone widens the stored policy on disk: refused at the next start, the floor stays.
    let path = node.identity.dir.join(control::bundles::LAST_BUNDLE);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("203.0.113.0/24", "0.0.0.0/0")).unwrap();
    let mut reopened = BundleStore::for_identity(&node.identity).unwrap();
    let err = reopened.load_last().unwrap_err();
    assert!(
        matches!(err, ControlError::StoredBundle { .. }) && err.to_string().contains("tampered"),
        "{err}"
    );
    assert_eq!((reopened.poll_after(), reopened.applied_version()), (0, second.version));
    assert!(reopened.accept(&old).is_err(), "still no rollback");
    assert_eq!(reopened.accept(&new).unwrap(), second, "the current bundle, fetched again, is accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spooled_events_are_uploaded_once_and_deduplicated_after_a_crash() {
    let server = Server::start(None).await;
    let node = enrolled(&server).await;
    let dir = node.state.path().join("spool");
    spool_with(&dir, &["e1", "e2", "e3"]);
    // What the disk held before the upload: a crash before the acknowledgement leaves this.
    let before = node.state.path().join("spool-before");
    std::fs::create_dir(&before).unwrap();
    for f in std::fs::read_dir(&dir).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), before.join(f.file_name())).unwrap();
    }
    let queue = EventQueue::open(node.state.path()).unwrap();
    let (spool, notify) = (queue.spool.clone(), queue.notify.clone());
    let sync = start_sync(&node, fast(), Some(queue));
    eventually("the spool drained", LONG, || async {
        (spool.lock().unwrap().pending_count() == 0).then_some(())
    })
    .await;
    assert_eq!(server.alert_ids().await, ["e1", "e2", "e3"]);
    // New alerts go out at once when notified.
    spool.lock().unwrap().append(&spool_record("e4")).unwrap();
    notify.notify_one();
    eventually("e4 stored", LONG, || async { (server.alert_ids().await.len() == 4).then_some(()) }).await;
    let client = sync.client.clone();
    sync.stop().await;
    // The crashed copy sends e1-e3 again: the control plane has them already.
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::rename(&before, &dir).unwrap();
    let crashed = EventQueue::open(node.state.path()).unwrap();
    let done = control::upload_events(&client, &crashed, 500).await.unwrap();
    assert_eq!((done.read, done.accepted, done.duplicates), (3, 0, 3));
    assert_eq!(crashed.spool.lock().unwrap().pending_count(), 0);
    assert_eq!(server.alert_ids().await, ["e1", "e2", "e3", "e4"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_keeps_the_client_working_past_the_first_certificate() {
    let server = Server::start(Some("6s")).await;
    let node = enrolled(&server).await;
    let first_expiry = node.identity.cert_not_after_ms;
    assert!(first_expiry - ringfence_proto::now_ms() <= 6_000);
    let mut sync = start_sync(&node, fast(), None);
    let renewed_at = eventually("the renewal", LONG, || async {
        (sync.client.identity().cert_not_after_ms > first_expiry).then(ringfence_proto::now_ms)
    })
    .await;
    assert!(renewed_at <= first_expiry + 2_000, "renewed in time: {renewed_at} vs expiry {first_expiry}");
    // What follows runs on the renewed certificate only.
    eventually("the first certificate's expiry", LONG, || async {
        (ringfence_proto::now_ms() > first_expiry).then_some(())
    })
    .await;
    assert!(Identity::load(node.state.path()).unwrap().cert_not_after_ms > first_expiry, "saved");
    // Past the first certificate's expiry, bundles and acks still flow.
    server.apply(&policy_yaml("late", "198.51.100.0/24"), "region=eu").await;
    let bundle = sync.next_bundle().await;
    sync.end.results.send(ApplyResult::applied(&bundle)).await.unwrap();
    let id = node.identity.node_id().to_owned();
    eventually("the ack", LONG, || async {
        (server.node(&id).await.applied_bundle_version == Some(bundle.version)).then_some(())
    })
    .await;
    sync.client.report(&NodeReport::default()).await.expect("a direct call works too");
    sync.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_retries_through_an_outage_and_delivers_afterwards() {
    let mut server = Server::start(None).await;
    let node = enrolled(&server).await;
    let queue = EventQueue::open(node.state.path()).unwrap();
    let (spool, notify) = (queue.spool.clone(), queue.notify.clone());
    let mut sync = start_sync(&node, fast(), Some(queue));
    let id = node.identity.node_id().to_owned();
    // The sync runs (its first report arrived) when the outage starts.
    eventually("the first report", LONG, || async { server.node(&id).await.geo_db_version.map(drop) }).await;
    server.stop().await;
    let err = sync.client.report(&NodeReport::default()).await.unwrap_err();
    assert!(err.is_transient() && err.to_string().contains("unreachable"), "{err}");
    const UPLOAD_FAILED: &str = "event upload failed; the events stay in the spool";
    let failed_before = sync.logs.count(UPLOAD_FAILED);
    spool.lock().unwrap().append(&spool_record("during-outage")).unwrap();
    notify.notify_one();
    eventually("an upload attempt during the outage", LONG, || async {
        (sync.logs.count(UPLOAD_FAILED) > failed_before).then_some(())
    })
    .await;
    assert_eq!(spool.lock().unwrap().pending_count(), 1, "kept while the control plane is down");
    server.restart().await;
    server.apply(&policy_yaml("after", "198.51.100.0/24"), "region=eu").await;
    let bundle = sync.next_bundle().await;
    sync.end.results.send(ApplyResult::applied(&bundle)).await.unwrap();
    eventually("ack and events after the outage", LONG, || async {
        let acked = server.node(&id).await.applied_bundle_version == Some(bundle.version);
        (acked && server.alert_ids().await == ["during-outage"]).then_some(())
    })
    .await;
    // The server stores the batch before its reply reaches the agent, which then advances the
    // spool's cursor: wait for that too rather than read it the instant the alert is stored.
    eventually("the spool emptied once the upload was acknowledged", LONG, || async {
        (spool.lock().unwrap().pending_count() == 0).then_some(())
    })
    .await;
    sync.stop().await;
}

/// Problem 5 of the fleet-hardening issue: a corrupt line in the alert spool and a corrupt
/// cursor in the denial spool stop neither the start nor the delivery: the line is quarantined
/// (moved aside, counted), the cursor rebuilt, and every other event is delivered, also later
/// ones.
async fn corrupt_spool_line_and_cursor_do_not_stop_delivery(storage: Storage) {
    use std::io::Write;
    let server = Server::start_on(storage, None).await;
    let node = enrolled(&server).await;
    let alerts = node.state.path().join("spool");
    spool_with(&alerts, &["e1"]);
    let file = alerts.join("spool-00000001.jsonl");
    let mut f = std::fs::OpenOptions::new().append(true).open(&file).unwrap();
    f.write_all(b"{\"id\": \"e-torn\", \"type\": \"exfil\x00tration\"\n").unwrap();
    drop(f);
    spool_with(&alerts, &["e2"]);
    let denials = node.state.path().join(ringfence_agent::spool::DENIAL_SPOOL_DIR);
    spool_with(&denials, &["d1"]);
    std::fs::write(denials.join("cursor"), b"{\"seq\": 1, \"line\": \"garbage").unwrap();
    let queue = EventQueue::open(node.state.path()).expect("a corrupt cursor is not fatal");
    let (spool, notify) = (queue.spool.clone(), queue.notify.clone());
    let sync = start_sync(&node, fast(), Some(queue));
    eventually("the good events", LONG, || async {
        (server.alert_ids().await == ["d1", "e1", "e2"]).then_some(())
    })
    .await;
    assert_eq!(spool.lock().unwrap().quarantined(), 1);
    let quarantine = std::fs::read_to_string(alerts.join(ringfence_agent::spool::QUARANTINE)).unwrap();
    assert!(quarantine.contains("e-torn"), "{quarantine}");
    // Delivery goes on.
    spool.lock().unwrap().append(&spool_record("e3")).unwrap();
    notify.notify_one();
    eventually("a later event", LONG, || async { (server.alert_ids().await.len() == 4).then_some(()) }).await;
    assert_eq!(server.alert_ids().await, ["d1", "e1", "e2", "e3"]);
    sync.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_spool_line_and_cursor_do_not_stop_delivery_sqlite() {
    corrupt_spool_line_and_cursor_do_not_stop_delivery(Storage::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_spool_line_and_cursor_do_not_stop_delivery_postgres() {
    corrupt_spool_line_and_cursor_do_not_stop_delivery(Storage::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolling_with_the_wrong_ca_says_so_and_enrolls_nothing() {
    let server = Server::start(None).await;
    let token = server.token("eu").await;
    let state = tempfile::tempdir().unwrap();
    // Another control plane's CA.
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let other = params.self_signed(&rcgen::KeyPair::generate().unwrap()).unwrap();
    let wrong = state.path().join("other-ca.pem");
    std::fs::write(&wrong, other.pem()).unwrap();
    let err = enroll(&server.base, &token, &wrong, state.path(), "host-a", None).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("--ca") && text.contains("did not sign") && text.contains("Nothing was enrolled"),
        "{text}"
    );
    assert!(!text.contains("enforcing"), "claims to enforce: {text}");
    assert_eq!(err.exit_code(), ringfence_agent::error::EXIT_CONFIG);
    assert!(Identity::load(state.path()).is_err(), "nothing saved");
    // The token was not used: the right CA enrolls with it.
    enroll(&server.base, &token, &server.ca_path, state.path(), "host-a", None).await.expect("right CA");
}
