//! A real control plane for the agent's client tests: `ringfence_control::start` in-process on
//! 127.0.0.1 (ephemeral port), a temporary state directory and SQLite, as the control plane's
//! own tests run it; plus the operator's side (admin credential from the state directory).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ringfence_cli::{ApiClient, ServerArgs};
use ringfence_control::{Running, ServeArgs};
use ringfence_proto::api::{
    AlertList, NodeInfo, NodeList, PolicyApplied, PolicyApplyRequest, Selector, TokenRequest, TokenResponse,
    WireGuardInfo,
};

/// A minimal valid policy allowing one network.
pub fn policy_yaml(name: &str, cidr: &str) -> String {
    format!(
        "apiVersion: ringfence.dev/v1\nkind: EgressPolicy\nmetadata: {{name: {name}}}\nspec:\n  defaultAction: deny\n  egress:\n    - {{name: web, action: allow, to: {{cidrs: [{cidr}]}}}}\n"
    )
}

/// A WireGuard public key named `name` (32 bytes derived from it, base64).
pub fn wg_key(name: &str) -> String {
    let mut bytes = [0u8; 32];
    for (i, b) in name.bytes().enumerate() {
        bytes[i % 32] ^= b.wrapping_add(i as u8);
    }
    wireguard_control::Key(bytes).to_base64()
}

/// What a node reports: its key and an endpoint in the server's endpoint network (its tunnel
/// address comes from the pool).
pub fn wg(name: &str) -> WireGuardInfo {
    WireGuardInfo { public_key: wg_key(name), endpoint: Some("192.0.2.7:51820".into()), allowed_ips: vec![] }
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after `limit`.
pub async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    limit: Duration,
    mut check: impl FnMut() -> F,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The log of the code under test: a subscriber for its task (`.with_subscriber(logs.dispatch())`)
/// writing into memory, so a test can wait until a line shows that something ran.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<String>>);

impl Logs {
    pub fn dispatch(&self) -> tracing::Dispatch {
        let logs = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .without_time()
            .with_writer(move || logs.clone())
            .finish();
        tracing::Dispatch::new(subscriber)
    }

    /// Lines containing `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.0.lock().unwrap().lines().filter(|l| l.contains(needle)).count()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().push_str(&String::from_utf8_lossy(buf));
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Which storage the control plane runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Storage {
    Sqlite,
    Postgres,
}

/// A new database in this process's throwaway PostgreSQL cluster (started on first use).
fn postgres_database() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::OnceLock;
    static CLUSTER: OnceLock<Result<ringfence_tests::postgres::PgCluster, String>> = OnceLock::new();
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let cluster = match CLUSTER.get_or_init(ringfence_tests::postgres::PgCluster::start) {
        Ok(c) => c,
        Err(e) => panic!("cannot start the test PostgreSQL cluster: {e}"),
    };
    let name = format!("agent{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    cluster.create_database(&name).unwrap_or_else(|e| panic!("{e}"))
}

/// A running control plane.
pub struct Server {
    running: Option<Running>,
    /// `https://127.0.0.1:PORT`.
    pub base: String,
    /// Its CA certificate file (what an operator hands to `ringfence-agent enroll --ca`).
    pub ca_path: PathBuf,
    state_dir: PathBuf,
    listen: String,
    cert_ttl: Option<&'static str>,
    db: String,
    _temp: tempfile::TempDir,
}

impl Server {
    /// A fresh control plane; `cert_ttl` as `--cert-ttl` (e.g. "6s").
    pub async fn start(cert_ttl: Option<&'static str>) -> Server {
        Server::start_on(Storage::Sqlite, cert_ttl).await
    }

    /// A fresh control plane on `storage`.
    pub async fn start_on(storage: Storage, cert_ttl: Option<&'static str>) -> Server {
        let temp = tempfile::tempdir().unwrap();
        let state_dir = temp.path().join("state");
        let db = match storage {
            Storage::Sqlite => format!("sqlite://{}", state_dir.with_extension("db").display()),
            Storage::Postgres => postgres_database(),
        };
        let running = serve(&state_dir, "127.0.0.1:0", cert_ttl, &db).await;
        Server {
            base: format!("https://127.0.0.1:{}", running.addr.port()),
            listen: running.addr.to_string(),
            ca_path: running.ca_path.clone(),
            running: Some(running),
            state_dir,
            cert_ttl,
            db,
            _temp: temp,
        }
    }

    /// Stops serving (long-polls are answered, connections drained).
    pub async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
    }

    /// Starts again on the same state directory, database and port.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.running = Some(serve(&self.state_dir, &self.listen, self.cert_ttl, &self.db).await);
    }

    /// The operator's API client (the one `ringfence` uses), with the admin credential.
    fn api(&self) -> ApiClient {
        let args = ServerArgs {
            server: self.base.clone(),
            ca: self.ca_path.clone(),
            admin_token_file: self.state_dir.join("admin.token"),
        };
        ApiClient::new(&args).unwrap_or_else(|e| panic!("admin client: {e}"))
    }

    async fn admin_get<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        self.api().get(path).await.unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// A one-time join token for a node of `region`.
    pub async fn token(&self, region: &str) -> String {
        let req = TokenRequest { region: region.into(), labels: Default::default(), ttl_seconds: None };
        let t: TokenResponse =
            self.api().post("/v1/tokens", &req).await.unwrap_or_else(|e| panic!("token: {e}"));
        t.token
    }

    /// Applies a policy to the nodes of `selector` (e.g. `region=eu`).
    pub async fn apply(&self, yaml: &str, selector: &str) -> PolicyApplied {
        let req = PolicyApplyRequest {
            policy_yaml: yaml.into(),
            selector: Selector::parse(selector).unwrap(),
            author: Some("tester".into()),
            comment: None,
            strict: false,
        };
        self.api().post("/v1/policies", &req).await.unwrap_or_else(|e| panic!("policy apply: {e}"))
    }

    /// The inventory entry of a node.
    pub async fn node(&self, node_id: &str) -> NodeInfo {
        let nodes: NodeList = self.admin_get("/v1/nodes").await;
        nodes.nodes.into_iter().find(|n| n.node_id == node_id).expect("node in the inventory")
    }

    /// The details of the bundle acknowledgements `node_id` sent, from the audit log.
    pub async fn acks(&self, node_id: &str) -> Vec<serde_json::Value> {
        let text = self.api().get_text("/v1/audit").await.unwrap_or_else(|e| panic!("GET /v1/audit: {e}"));
        let actor = format!("node:{node_id}");
        text.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("audit record"))
            .filter(|r| r["action"] == "bundle.ack" && r["actor"] == actor.as_str())
            .map(|r| r["details"].clone())
            .collect()
    }

    /// Stored event ids, sorted.
    pub async fn alert_ids(&self) -> Vec<String> {
        let alerts: AlertList = self.admin_get("/v1/alerts?limit=1000").await;
        let mut ids: Vec<String> = alerts.alerts.into_iter().map(|a| a.event.id).collect();
        ids.sort();
        ids
    }
}

async fn serve(state_dir: &Path, listen: &str, cert_ttl: Option<&str>, db: &str) -> Running {
    let mut argv = vec!["--listen", listen, "--db", db, "--shutdown-grace", "2s"];
    argv.extend(["--wg-pool", "*=10.77.0.0/16", "--wg-endpoint-cidr", "*=192.0.2.0/24"]);
    let state = state_dir.display().to_string();
    argv.extend(["--state-dir", &state]);
    if let Some(ttl) = cert_ttl {
        argv.extend(["--cert-ttl", ttl]);
    }
    let args = ServeArgs::from_flags(argv).unwrap();
    let config = args.validate().unwrap_or_else(|e| panic!("test config invalid: {e:?}"));
    ringfence_control::start(config).await.unwrap_or_else(|e| panic!("control plane start: {e}"))
}
