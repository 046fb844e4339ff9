//! A real control plane for the agent's client tests: `ringfence_control::start` in-process on
//! 127.0.0.1 (ephemeral port), a temporary state directory and SQLite, as the control plane's
//! own tests run it; plus the operator's side (admin credential from the state directory).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::{Certificate, Client, StatusCode};
use ringfence_control::{Running, ServeArgs};
use ringfence_proto::api::{
    AlertList, NodeInfo, NodeList, PolicyApplied, PolicyApplyRequest, Selector, TokenRequest, TokenResponse,
    WireGuardInfo,
};
use serde::Serialize;

/// A minimal valid policy allowing one network.
pub fn policy_yaml(name: &str, cidr: &str) -> String {
    format!(
        "apiVersion: ringfence.dev/v1\nkind: EgressPolicy\nmetadata: {{name: {name}}}\nspec:\n  defaultAction: deny\n  egress:\n    - {{name: web, action: allow, to: {{cidrs: [{cidr}]}}}}\n"
    )
}

pub fn wg(key: &str) -> WireGuardInfo {
    WireGuardInfo {
        public_key: key.into(),
        endpoint: Some("192.0.2.7:51820".into()),
        allowed_ips: vec!["10.77.0.7/32".into()],
    }
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

/// A running control plane.
pub struct Server {
    running: Option<Running>,
    /// `https://127.0.0.1:PORT`.
    pub base: String,
    /// Its CA certificate file (what an operator hands to `ringfence-agent enroll --ca`).
    pub ca_path: PathBuf,
    ca_pem: String,
    admin_token: String,
    state_dir: PathBuf,
    listen: String,
    cert_ttl: Option<&'static str>,
    _temp: tempfile::TempDir,
}

impl Server {
    /// A fresh control plane; `cert_ttl` as `--cert-ttl` (e.g. "6s").
    pub async fn start(cert_ttl: Option<&'static str>) -> Server {
        let temp = tempfile::tempdir().unwrap();
        let state_dir = temp.path().join("state");
        let running = serve(&state_dir, "127.0.0.1:0", cert_ttl).await;
        let ca_pem = std::fs::read_to_string(&running.ca_path).unwrap();
        let admin_token = std::fs::read_to_string(&running.admin_token_path).unwrap().trim().to_owned();
        Server {
            base: format!("https://127.0.0.1:{}", running.addr.port()),
            listen: running.addr.to_string(),
            ca_path: running.ca_path.clone(),
            running: Some(running),
            ca_pem,
            admin_token,
            state_dir,
            cert_ttl,
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
        self.running = Some(serve(&self.state_dir, &self.listen, self.cert_ttl).await);
    }

    fn admin(&self) -> Client {
        Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(Certificate::from_pem(self.ca_pem.as_bytes()).unwrap())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    }

    pub async fn admin_get(&self, path: &str) -> reqwest::Response {
        let url = format!("{}{path}", self.base);
        self.admin().get(url).bearer_auth(&self.admin_token).send().await.unwrap()
    }

    pub async fn admin_post<T: Serialize>(&self, path: &str, body: &T) -> reqwest::Response {
        let url = format!("{}{path}", self.base);
        self.admin().post(url).bearer_auth(&self.admin_token).json(body).send().await.unwrap()
    }

    /// A one-time join token for a node of `region`.
    pub async fn token(&self, region: &str) -> String {
        let req = TokenRequest { region: region.into(), labels: Default::default(), ttl_seconds: None };
        let resp = self.admin_post("/v1/tokens", &req).await;
        assert_eq!(resp.status(), StatusCode::OK, "token create: {}", resp.text().await.unwrap());
        resp.json::<TokenResponse>().await.unwrap().token
    }

    /// Applies a policy to the nodes of `selector` (e.g. `region=eu`).
    pub async fn apply(&self, yaml: &str, selector: &str) -> PolicyApplied {
        let req = PolicyApplyRequest {
            policy_yaml: yaml.into(),
            selector: Selector::parse(selector).unwrap(),
            author: Some("tester".into()),
            comment: None,
        };
        let resp = self.admin_post("/v1/policies", &req).await;
        assert_eq!(resp.status(), StatusCode::OK, "policy apply: {}", resp.text().await.unwrap());
        resp.json().await.unwrap()
    }

    /// The inventory entry of a node.
    pub async fn node(&self, node_id: &str) -> NodeInfo {
        let nodes: NodeList = self.admin_get("/v1/nodes").await.json().await.unwrap();
        nodes.nodes.into_iter().find(|n| n.node_id == node_id).expect("node in the inventory")
    }

    /// Stored event ids, sorted.
    pub async fn alert_ids(&self) -> Vec<String> {
        let alerts: AlertList = self.admin_get("/v1/alerts?limit=1000").await.json().await.unwrap();
        let mut ids: Vec<String> = alerts.alerts.into_iter().map(|a| a.event.id).collect();
        ids.sort();
        ids
    }
}

async fn serve(state_dir: &Path, listen: &str, cert_ttl: Option<&str>) -> Running {
    let db = format!("sqlite://{}", state_dir.with_extension("db").display());
    let mut argv = vec!["serve", "--listen", listen, "--db", &db, "--shutdown-grace", "2s"];
    let state = state_dir.display().to_string();
    argv.extend(["--state-dir", &state]);
    if let Some(ttl) = cert_ttl {
        argv.extend(["--cert-ttl", ttl]);
    }
    #[derive(clap::Parser)]
    struct Wrap {
        #[command(flatten)]
        serve: ServeArgs,
    }
    let args = <Wrap as clap::Parser>::try_parse_from(argv).unwrap().serve;
    let config = args.validate().unwrap_or_else(|e| panic!("test config invalid: {e:?}"));
    ringfence_control::start(config).await.unwrap_or_else(|e| panic!("control plane start: {e}"))
}
