//! The Kubernetes identity source end to end: the real agent watches pods on "its node" from an
//! API server stand-in (the list and watch endpoints kubelet's API serves, with real Pod JSON),
//! finds pod cgroups laid out as kubelet does (systemd driver, containerd), and enforces each
//! pod's policy by its labels, in a netns lab. The stand-in listens on loopback of the lab's
//! node namespace, where the agent runs. Run as root, serially (`cargo xtask test`).
use std::{
    io::{BufRead, BufReader, Write},
    net::{TcpListener, TcpStream},
    sync::{Arc, Condvar, Mutex},
    time::Duration,
};

use ringfence_tests::{agent_bin, workload_agent_args, AgentProc, Enforced, NetNs, TestCgroup};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);
const NODE: &str = "gpu-node-7";
const EU_HOST: &str = "198.51.100.10";
const US_HOST: &str = "203.0.113.5";

const NODE_DEFAULT: &str =
    "apiVersion: ringfence.dev/v1\nkind: EgressPolicy\nmetadata: { name: node-default }\nspec:\n  defaultAction: deny\n  egress: []\n";

/// Pods labelled `ringfence.dev/profile: residency-eu` may reach 198.51.100.0/25 only.
const EU_PODS: &str = "apiVersion: ringfence.dev/v1
kind: EgressPolicy
metadata: { name: eu-pods }
spec:
  workloadSelector:
    matchLabels: { ringfence.dev/profile: residency-eu, k8s.namespace: training }
  defaultAction: deny
  egress:
    - name: eu
      action: allow
      to: { cidrs: [198.51.100.0/25] }
";

fn pod(uid: &str, name: &str, rv: u64) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": "training", "uid": uid, "resourceVersion": rv.to_string(),
            "creationTimestamp": "2026-12-03T08:14:03Z",
            "labels": {"app": "trainer", "ringfence.dev/profile": "residency-eu"},
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "finetune",
                                 "uid": "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d", "controller": true}]
        },
        "spec": {
            "containers": [{"name": "trainer", "image": "nvcr.io/nvidia/pytorch:24.05-py3"}],
            "serviceAccountName": "trainer", "serviceAccount": "trainer", "nodeName": NODE,
            "restartPolicy": "Never"
        },
        "status": {"phase": "Running", "qosClass": "Burstable", "podIP": "192.168.41.9"}
    })
}

/// The pods the stand-in serves, with a version that wakes open watches.
#[derive(Default)]
struct Pods {
    items: Vec<Value>,
    version: u64,
}

type Shared = Arc<(Mutex<Pods>, Condvar)>;

/// `GET /api/v1/pods?...`: a PodList; with `watch=true`, a chunked stream of ADDED events for
/// pods added while it is open (until the client goes away).
fn serve(listener: TcpListener, pods: Shared) {
    for stream in listener.incoming().flatten() {
        let pods = pods.clone();
        std::thread::spawn(move || {
            let _ = handle(stream, &pods);
        });
    }
}

fn handle(mut stream: TcpStream, pods: &Shared) -> std::io::Result<()> {
    let mut head = String::new();
    BufReader::new(&stream).read_line(&mut head)?;
    let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
    assert!(path.contains("fieldSelector=spec.nodeName%3D") && path.contains(NODE), "{path}");
    let (lock, cv) = &**pods;
    if !path.contains("watch=true") {
        let p = lock.lock().expect("pods");
        let body = json!({"apiVersion": "v1", "kind": "PodList",
            "metadata": {"resourceVersion": p.version.to_string()}, "items": p.items});
        let body = body.to_string();
        return write!(
            stream,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    }
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )?;
    let mut seen = lock.lock().expect("pods").items.len();
    loop {
        let p = lock.lock().expect("pods");
        let (p, _) =
            cv.wait_timeout_while(p, Duration::from_secs(1), |p| p.items.len() == seen).expect("wait");
        for item in &p.items[seen..] {
            let line = format!("{}\n", json!({"type": "ADDED", "object": item}));
            write!(stream, "{:x}\r\n{line}\r\n", line.len())?;
        }
        seen = p.items.len();
        drop(p);
        stream.flush()?;
    }
}

fn add_pod(pods: &Shared, uid: &str, name: &str) {
    let (lock, cv) = &**pods;
    let mut p = lock.lock().expect("pods");
    p.version += 1;
    let v = p.version;
    p.items.push(pod(uid, name, v));
    cv.notify_all();
}

/// The stand-in API server, listening on loopback inside `ns`.
fn start_api(ns: &NetNs, pods: Shared) -> u16 {
    let (tx, rx) = std::sync::mpsc::channel();
    let ns_file = ns.open();
    std::thread::spawn(move || {
        nix::sched::setns(ns_file, nix::sched::CloneFlags::CLONE_NEWNET).expect("enter the node netns");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the API stand-in");
        tx.send(listener.local_addr().expect("addr").port()).expect("port");
        serve(listener, pods);
    });
    rx.recv_timeout(Duration::from_secs(5)).expect("API stand-in listening")
}

/// kubelet's systemd-driver cgroups of a Burstable pod's containerd container, outermost first
/// (the QoS slices may exist already), each removed on drop.
fn pod_cgroups(root: &TestCgroup, uid: &str) -> Vec<TestCgroup> {
    let parts = [
        "kubepods.slice".to_string(),
        "kubepods-burstable.slice".to_string(),
        format!("kubepods-burstable-pod{}.slice", uid.replace('-', "_")),
        "cri-containerd-4f1c2d9e8b7a6f5e4d3c2b1a09f8e7d6c5b4a39281706f5e4d3c2b1a0f9e8d7c.scope".to_string(),
    ];
    let mut made: Vec<TestCgroup> = Vec::new();
    let mut path = root.path().to_path_buf();
    for part in parts {
        path.push(part);
        if path.exists() {
            continue;
        }
        made.push(match made.last() {
            Some(parent) => parent.child(path.file_name().and_then(|n| n.to_str()).expect("name")),
            None => TestCgroup::at(&path),
        });
    }
    made
}

#[test]
fn pods_get_the_policy_their_labels_select() {
    let mut e = Enforced::prepare_with_hosts("wlk8s", &[], &[443], NODE_DEFAULT);
    let pods: Shared = Arc::default();
    let known = "7c1e4a52-3b9d-4f0e-8a61-2d5c9b7e1f34";
    let later = "b3f8d2a1-6c4e-4b7a-9d05-8e1f2a3c4d5b";
    add_pod(&pods, known, "finetune-0");
    let port = start_api(e.lab.node_ns(), pods.clone());
    let dir = e.dir().to_path_buf();
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p
    };
    let token = write("token", "not-a-real-token\n");
    let identity = write(
        "identity.yaml",
        &format!(
            "apiVersion: ringfence.dev/v1\nkind: IdentitySources\nsources:\n  kubernetes:\n    nodeName: {NODE}\n    apiServer: http://127.0.0.1:{port}\n    tokenFile: {}\n",
            token.display()
        ),
    );
    let policy = write("eu-pods.yaml", EU_PODS);
    let state = dir.join("state");
    std::fs::create_dir_all(&state).expect("state dir");
    let root = e.lab.cgroup();
    // The pod that exists before the agent starts, and its container.
    let first = pod_cgroups(root, known);
    let mut args = workload_agent_args(root.path(), &identity, &e.bpffs(), &state);
    args.extend(["--policy".into(), e.policy.clone().into(), "--workload-policy".into(), policy.into()]);
    let agent = AgentProc::spawn_command(e.lab.node_ns().command(agent_bin()), &args, false);
    agent.wait_for_message("enforcing", Duration::from_secs(60));
    let seen = agent.wait_for("the pod's container", WAIT, |v| {
        v["message"] == "workload found"
            && v["workload"].as_str().is_some_and(|w| w.ends_with(".scope"))
            && v["policy"] == "eu-pods"
    });
    assert!(seen["labels"].as_str().unwrap_or("").contains("app=trainer"), "{seen}");
    let container = first.last().expect("container cgroup");
    e.lab.probe_in(container, &["tcp", EU_HOST, "443"]).assert_ok("pod -> EU");
    e.lab.probe_in(container, &["tcp", US_HOST, "443"]).assert_eperm("pod -> US");

    // A pod scheduled later: its cgroup appears first (the node default holds it: its labels
    // are not known yet), then the watch delivers the pod and its policy takes over.
    let second = pod_cgroups(root, later);
    let container = second.last().expect("container cgroup");
    agent.wait_for("the second pod's cgroup", WAIT, |v| {
        v["message"] == "workload found"
            && v["workload"]
                .as_str()
                .is_some_and(|w| w.contains(&later.replace('-', "_")) && w.ends_with(".scope"))
    });
    e.lab.probe_in(container, &["tcp", EU_HOST, "443"]).assert_eperm("second pod before its labels");
    add_pod(&pods, later, "finetune-1");
    agent.wait_for("the second pod's labels", WAIT, |v| {
        v["workload"].as_str().is_some_and(|w| w.contains(&later.replace('-', "_")) && w.ends_with(".scope"))
            && v["policy"] == "eu-pods"
    });
    e.lab.probe_in(container, &["tcp", EU_HOST, "443"]).assert_ok("second pod -> EU");
    e.lab.probe_in(container, &["tcp", US_HOST, "443"]).assert_eperm("second pod -> US");
    drop(second);
    drop(first);
    e.agent = Some(agent);
}
