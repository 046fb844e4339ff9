//! The watch against an in-process API server serving real Pod JSON for list and watch.
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use tokio::sync::{mpsc, watch};

use super::*;

const NODE: &str = "gpu-node-07";
const DEADLINE: Duration = Duration::from_secs(10);
const UID_A: &str = "1f2e3d4c-5b6a-4978-8a9b-0c1d2e3f4a5b";
const UID_B: &str = "2a3b4c5d-6e7f-4a8b-9c0d-1e2f3a4b5c6d";
const UID_C: &str = "3b4c5d6e-7f8a-4b9c-8d0e-2f3a4b5c6d7e";

/// A Pod as the API server returns it (kubectl get pod -o json, trimmed a little).
fn pod(uid: &str, name: &str, rv: &str, app: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "generateName": "llama-finetune-",
            "namespace": "training",
            "uid": uid,
            "resourceVersion": rv,
            "creationTimestamp": "2026-11-30T08:14:03Z",
            "labels": {"app": app, "batch.kubernetes.io/job-name": "llama-finetune", "ringfence.dev/profile": "training"},
            "annotations": {"kubectl.kubernetes.io/default-container": "trainer"},
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "llama-finetune",
                                 "uid": "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", "controller": true, "blockOwnerDeletion": true}]
        },
        "spec": {
            "volumes": [{"name": "kube-api-access-x7k2p", "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}]}}],
            "containers": [{"name": "trainer", "image": "nvcr.io/nvidia/pytorch:24.05-py3",
                            "command": ["torchrun", "--nproc-per-node=8", "train.py"],
                            "resources": {"limits": {"nvidia.com/gpu": "8"}, "requests": {"cpu": "32", "memory": "256Gi"}},
                            "terminationMessagePath": "/dev/termination-log", "imagePullPolicy": "IfNotPresent"}],
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "trainer",
            "serviceAccount": "trainer",
            "nodeName": NODE,
            "schedulerName": "default-scheduler",
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "priority": 0,
            "enableServiceLinks": true,
            "preemptionPolicy": "PreemptLowerPriority"
        },
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True", "lastProbeTime": null,
                            "lastTransitionTime": "2026-11-30T08:14:41Z"}],
            "hostIP": "10.20.7.17",
            "podIP": "192.168.41.9",
            "podIPs": [{"ip": "192.168.41.9"}],
            "startTime": "2026-11-30T08:14:03Z",
            "containerStatuses": [{"name": "trainer", "ready": true, "restartCount": 0,
                                   "image": "nvcr.io/nvidia/pytorch:24.05-py3",
                                   "imageID": "nvcr.io/nvidia/pytorch@sha256:7d3c6a1f0e9b8a7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c",
                                   "containerID": "containerd://3d5f7a9c1e2b4d6f8a0c2e4f6a8b0d2f4e6a8c0b2d4f6e8a0c2b4d6f8e0a2c4b",
                                   "started": true, "state": {"running": {"startedAt": "2026-11-30T08:14:40Z"}}}],
            "qosClass": "Burstable"
        }
    })
}

fn pod_list(rv: &str, items: Vec<serde_json::Value>) -> String {
    json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": rv}, "items": items})
        .to_string()
}

fn event(kind: &str, object: serde_json::Value) -> Bytes {
    Bytes::from(format!("{}\n", json!({"type": kind, "object": object})))
}

/// A watch as the server opened it: its query, and the sender feeding its body (dropping it
/// ends the watch).
type OpenWatch = (String, mpsc::UnboundedSender<Bytes>);

/// The fake API server's state, shared with its handler.
#[derive(Default)]
struct Api {
    list: Mutex<String>,
    /// Statuses to answer the next requests with, instead of serving them.
    fail_lists: Mutex<VecDeque<StatusCode>>,
    fail_watches: Mutex<VecDeque<StatusCode>>,
    /// Every request's query, in order.
    queries: Mutex<Vec<String>>,
    /// Each watch: its query and the sender feeding its body (dropping it ends the watch).
    watches: Mutex<Option<mpsc::UnboundedSender<OpenWatch>>>,
}

async fn pods(State(api): State<Arc<Api>>, uri: Uri) -> Response {
    let query = uri.query().unwrap_or_default().to_owned();
    api.queries.lock().expect("lock").push(query.clone());
    if !query.contains("watch=true") {
        if let Some(status) = api.fail_lists.lock().expect("lock").pop_front() {
            return (status, "injected failure").into_response();
        }
        let body = api.list.lock().expect("lock").clone();
        return ([("content-type", "application/json")], body).into_response();
    }
    if let Some(status) = api.fail_watches.lock().expect("lock").pop_front() {
        return (status, r#"{"kind":"Status","code":410,"reason":"Expired"}"#).into_response();
    }
    let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
    if let Some(watches) = api.watches.lock().expect("lock").as_ref() {
        let _ = watches.send((query, tx));
    }
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (Ok::<_, Infallible>(chunk), rx))
    });
    ([("content-type", "application/json")], Body::from_stream(stream)).into_response()
}

/// Serves `api` on a loopback port; its base URL.
async fn serve(api: Arc<Api>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let app = Router::new().route("/api/v1/pods", get(pods)).with_state(api);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
            tokio::spawn(conn);
        }
    });
    format!("http://{addr}")
}

fn options() -> WatchOptions {
    WatchOptions {
        min_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        watch_timeout_seconds: 60,
        request_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(30),
    }
}

async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, fut).await.unwrap_or_else(|_| panic!("no {what} within {DEADLINE:?}"))
}

/// Waits until `check` holds for the cache.
async fn until(cache: &PodCache, what: &str, check: impl Fn(&PodCache) -> bool) {
    let mut changes = cache.subscribe();
    let waited = within(what, changes.wait_for(|_| check(cache))).await;
    waited.unwrap_or_else(|_| panic!("cache dropped while waiting for {what}"));
}

fn app_of(cache: &PodCache, uid: &str) -> Option<String> {
    cache.get(uid).and_then(|p| p.labels.get("app").cloned())
}

struct Running {
    api: Arc<Api>,
    cache: PodCache,
    watches: mpsc::UnboundedReceiver<OpenWatch>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), IdentityError>>,
}

async fn start(api: Api) -> Running {
    let (tx, watches) = mpsc::unbounded_channel();
    *api.watches.lock().expect("lock") = Some(tx);
    let api = Arc::new(api);
    let base = serve(api.clone()).await;
    let cache = PodCache::new();
    let (stop, stopped) = watch::channel(false);
    let task =
        tokio::spawn(run_pod_watch(ApiEndpoint::plain(base), NODE.into(), cache.clone(), options(), stopped));
    Running { api, cache, watches, stop, task }
}

impl Running {
    async fn next_watch(&mut self, what: &str) -> OpenWatch {
        within(what, self.watches.recv()).await.unwrap_or_else(|| panic!("server gone before {what}"))
    }

    async fn shut_down(self) {
        self.stop.send(true).expect("watch task alive");
        let result = within("shutdown", self.task).await.expect("watch task panicked");
        result.unwrap_or_else(|e| panic!("watch failed: {e}"));
    }
}

#[tokio::test]
async fn add_modify_delete_and_410_event() {
    let api = Api::default();
    *api.list.lock().expect("lock") = pod_list("100", vec![pod(UID_A, "llama-finetune-a", "99", "llama")]);
    let mut run = start(api).await;

    let (query, events) = run.next_watch("first watch").await;
    let selector = "fieldSelector=spec.nodeName%3Dgpu-node-07";
    assert!(query.contains(selector) && query.contains("resourceVersion=100"), "watch query: {query}");
    let first = run.api.queries.lock().expect("lock")[0].clone();
    assert_eq!(first, selector, "the first request is the list");
    let a = run.cache.get(UID_A).expect("listed pod cached");
    assert_eq!((a.namespace.as_str(), a.name.as_str()), ("training", "llama-finetune-a"));
    assert_eq!((a.service_account.as_deref(), a.labels["app"].as_str()), (Some("trainer"), "llama"));

    events.send(event("ADDED", pod(UID_B, "llama-finetune-b", "101", "llama"))).expect("watch open");
    until(&run.cache, "pod B added", |c| c.get(UID_B).is_some()).await;
    events.send(event("MODIFIED", pod(UID_A, "llama-finetune-a", "102", "llama-v2"))).expect("watch open");
    until(&run.cache, "pod A modified", |c| app_of(c, UID_A).as_deref() == Some("llama-v2")).await;
    events.send(event("DELETED", pod(UID_B, "llama-finetune-b", "103", "llama"))).expect("watch open");
    until(&run.cache, "pod B deleted", |c| c.get(UID_B).is_none()).await;
    assert_eq!(run.cache.len(), 1);

    // The version expired: a fresh list replaces the cache, the next watch starts from it.
    *run.api.list.lock().expect("lock") =
        pod_list("200", vec![pod(UID_C, "llama-finetune-c", "190", "mistral")]);
    let gone = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": "too old resource version: 103 (180)", "reason": "Expired", "code": 410});
    events.send(event("ERROR", gone)).expect("watch open");
    let (query, events) = run.next_watch("watch after the 410 event").await;
    assert!(query.contains("resourceVersion=200"), "watch after relist: {query}");
    let uids: Vec<String> = run.cache.snapshot().into_iter().map(|p| p.uid).collect();
    assert_eq!(uids, [UID_C], "the relist replaces the cache");

    // A watch the server ends is resumed from the last version seen.
    let bookmark = json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": "250"}});
    events.send(event("BOOKMARK", bookmark)).expect("watch open");
    drop(events);
    let (query, _events) = run.next_watch("watch after the stream ended").await;
    assert!(query.contains("resourceVersion=250"), "resumed watch: {query}");
    run.shut_down().await;
}

#[tokio::test]
async fn http_410_relists_and_errors_back_off() {
    let api = Api::default();
    *api.list.lock().expect("lock") = pod_list("500", vec![pod(UID_A, "llama-finetune-a", "499", "llama")]);
    api.fail_lists.lock().expect("lock").push_back(StatusCode::SERVICE_UNAVAILABLE);
    api.fail_watches.lock().expect("lock").push_back(StatusCode::GONE);
    let mut run = start(api).await;

    let (query, _events) = run.next_watch("watch after 503 and 410").await;
    assert!(query.contains("resourceVersion=500"), "watch query: {query}");
    let queries = run.api.queries.lock().expect("lock").clone();
    let kinds: Vec<&str> =
        queries.iter().map(|q| if q.contains("watch=true") { "watch" } else { "list" }).collect();
    assert_eq!(kinds, ["list", "list", "watch", "list", "watch"], "503 retried, 410 relisted");
    assert_eq!(app_of(&run.cache, UID_A).as_deref(), Some("llama"));
    run.shut_down().await;
}
