//! Test harness: a real control plane on 127.0.0.1 (ephemeral port, temp state directory) on
//! SQLite or PostgreSQL, driven over HTTPS (TLS 1.3, rustls) by admin and agent clients.

pub mod cli_bin;
pub mod pg;
pub mod receiver;

use std::path::PathBuf;
use std::time::Duration;

use reqwest::{Certificate, Client, Identity, StatusCode};
use ringfence_control::{Running, ServeArgs};
use ringfence_proto::api::{
    EnrollRequest, EnrollResponse, Labels, PolicyApplied, PolicyApplyRequest, Selector, TokenRequest,
    TokenResponse, WireGuardInfo,
};
use ringfence_proto::SignedBundle;
use serde::Serialize;

/// Which storage a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs each named `async fn(Backend)` in this module once per backend.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Postgres).await
                }
            )*
        }
    };
}

/// A minimal valid policy allowing one network.
pub fn policy_yaml(name: &str, cidr: &str) -> String {
    format!(
        "apiVersion: ringfence.dev/v1\nkind: EgressPolicy\nmetadata: {{name: {name}}}\nspec:\n  defaultAction: deny\n  egress:\n    - {{name: web, action: allow, to: {{cidrs: [{cidr}]}}}}\n"
    )
}

/// Options beyond the defaults.
#[derive(Default)]
pub struct Options {
    pub cert_ttl: Option<&'static str>,
    pub alertmanager: Option<String>,
    pub webhook: Option<String>,
    pub syslog: Option<String>,
    /// Share a database (replicas).
    pub db_url: Option<String>,
    /// Share a state directory (replicas).
    pub state_dir: Option<PathBuf>,
    /// More `serve` flags.
    pub extra: Vec<String>,
}

/// A running control plane.
pub struct TestServer {
    pub running: Option<Running>,
    pub base: String,
    pub ca_pem: String,
    pub admin_token: String,
    pub admin_token_path: PathBuf,
    pub ca_path: PathBuf,
    pub state_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

/// A client that trusts only the control plane's CA and speaks only TLS 1.3.
pub fn client(ca_pem: &str, identity: Option<Identity>) -> Client {
    client_at(ca_pem, identity, None)
}

/// [`client`], connecting from `local` (a loopback address: another source than a flood's).
pub fn client_at(ca_pem: &str, identity: Option<Identity>, local: Option<std::net::IpAddr>) -> Client {
    let mut builder = Client::builder()
        .local_address(local)
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .min_tls_version(reqwest::tls::Version::TLS_1_3)
        .timeout(Duration::from_secs(60));
    if let Some(identity) = identity {
        builder = builder.identity(identity);
    }
    builder.build().unwrap()
}

impl TestServer {
    pub async fn start(backend: Backend) -> TestServer {
        Self::start_with(backend, Options::default()).await
    }

    pub async fn start_with(backend: Backend, options: Options) -> TestServer {
        let (temp, state_dir) = match &options.state_dir {
            Some(dir) => (None, dir.clone()),
            None => {
                let temp = tempfile::tempdir().unwrap();
                let dir = temp.path().join("state");
                (Some(temp), dir)
            }
        };
        let db_url = match (options.db_url, backend) {
            (Some(url), _) => url,
            (None, Backend::Sqlite) => format!("sqlite://{}", state_dir.with_extension("db").display()),
            (None, Backend::Postgres) => pg::fresh_database().await,
        };
        let mut argv = vec![
            "--listen".to_owned(),
            "127.0.0.1:0".into(),
            "--state-dir".into(),
            state_dir.display().to_string(),
            "--db".into(),
            db_url.clone(),
            "--shutdown-grace".into(),
            "2s".into(),
            "--wg-pool".into(),
            "*=10.77.0.0/16".into(),
            "--wg-endpoint-cidr".into(),
            "*=192.0.2.0/24".into(),
        ];
        argv.extend(options.extra.iter().cloned());
        let pairs = [
            ("--cert-ttl", options.cert_ttl.map(str::to_owned)),
            ("--alertmanager-url", options.alertmanager),
            ("--webhook-url", options.webhook),
            ("--syslog", options.syslog),
        ];
        for (flag, value) in pairs {
            if let Some(v) = value {
                argv.push(flag.into());
                argv.push(v);
            }
        }
        let args = ServeArgs::from_flags(argv).unwrap();
        let config = args.validate().unwrap_or_else(|e| panic!("test config invalid: {e:?}"));
        let running = ringfence_control::start(config).await.unwrap_or_else(|e| panic!("server start: {e}"));
        let ca_pem = std::fs::read_to_string(&running.ca_path).unwrap();
        let admin_token = std::fs::read_to_string(&running.admin_token_path).unwrap().trim().to_owned();
        TestServer {
            base: format!("https://127.0.0.1:{}", running.addr.port()),
            admin_token_path: running.admin_token_path.clone(),
            ca_path: running.ca_path.clone(),
            running: Some(running),
            ca_pem,
            admin_token,
            state_dir,
            _temp: temp,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn db(&self) -> &ringfence_control::db::Db {
        &self.running.as_ref().unwrap().db
    }

    /// A client without any credential.
    pub fn anonymous(&self) -> Client {
        client(&self.ca_pem, None)
    }

    pub async fn admin_get(&self, path: &str) -> reqwest::Response {
        self.anonymous().get(self.url(path)).bearer_auth(&self.admin_token).send().await.unwrap()
    }

    pub async fn admin_post<T: Serialize>(&self, path: &str, body: &T) -> reqwest::Response {
        self.anonymous().post(self.url(path)).bearer_auth(&self.admin_token).json(body).send().await.unwrap()
    }

    pub async fn token(&self, region: &str, labels: &[(&str, &str)], ttl_seconds: Option<u64>) -> String {
        let labels: Labels = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let req = TokenRequest { region: region.into(), labels, ttl_seconds };
        let resp = self.admin_post("/v1/tokens", &req).await;
        assert_eq!(resp.status(), StatusCode::OK, "token create: {}", resp.text().await.unwrap());
        resp.json::<TokenResponse>().await.unwrap().token
    }

    pub async fn apply(&self, yaml: &str, selector: &str) -> PolicyApplied {
        let req = PolicyApplyRequest {
            policy_yaml: yaml.into(),
            selector: Selector::parse(selector).unwrap(),
            author: Some("tester".into()),
            comment: None,
            strict: false,
        };
        let resp = self.admin_post("/v1/policies", &req).await;
        assert_eq!(resp.status(), StatusCode::OK, "policy apply: {}", resp.text().await.unwrap());
        resp.json().await.unwrap()
    }

    /// Enrolls a new agent with a fresh token for `region`/`labels`.
    pub async fn agent(&self, region: &str, labels: &[(&str, &str)], wg_key: &str) -> Agent {
        let token = self.token(region, labels, None).await;
        Agent::enroll(self, &token, Some(wg(wg_key))).await.unwrap_or_else(|(s, e)| panic!("enroll: {s} {e}"))
    }

    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
    }
}

/// A WireGuard public key named `name` (base64 of 32 bytes derived from it).
pub fn wg_key(name: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(name.as_bytes()))
}

/// The WireGuard identity a well-behaved node named `name` reports: its key and an endpoint in
/// the test servers' endpoint network (its tunnel address comes from the pool).
pub fn wg(name: &str) -> WireGuardInfo {
    WireGuardInfo {
        public_key: wg_key(name),
        endpoint: Some(format!("192.0.2.{}:51820", name.len())),
        allowed_ips: vec![],
    }
}

/// An enrolled agent: its key stays here; its certificate came from the control plane.
pub struct Agent {
    pub node_id: String,
    pub key_pem: String,
    pub cert_pem: String,
    pub enrolled: EnrollResponse,
    pub pinned: ed25519_dalek::VerifyingKey,
    pub client: Client,
    base: String,
}

impl Agent {
    pub async fn enroll(
        server: &TestServer,
        token: &str,
        wireguard: Option<WireGuardInfo>,
    ) -> Result<Agent, (StatusCode, String)> {
        Agent::enroll_at(&server.base, &server.ca_pem, None, token, wireguard).await
    }

    /// Enrolls at `base` from the local address `local`.
    pub async fn enroll_at(
        base: &str,
        ca_pem: &str,
        local: Option<std::net::IpAddr>,
        token: &str,
        wireguard: Option<WireGuardInfo>,
    ) -> Result<Agent, (StatusCode, String)> {
        let key = ringfence_proto::csr::generate("test-host").unwrap();
        let req = EnrollRequest {
            token: token.into(),
            csr_pem: key.csr_pem.clone(),
            agent_version: Some("0.1.0-test".into()),
            hostname: Some("test-host".into()),
            wireguard,
        };
        let resp =
            client_at(ca_pem, None, local).post(format!("{base}/v1/enroll")).json(&req).send().await.unwrap();
        if resp.status() != StatusCode::OK {
            return Err((resp.status(), resp.text().await.unwrap()));
        }
        let enrolled: EnrollResponse = resp.json().await.unwrap();
        let pinned = ringfence_proto::parse_public_key(&enrolled.bundle_signing_key).unwrap();
        let identity =
            Identity::from_pem(format!("{}{}", enrolled.certificate_pem, key.key_pem).as_bytes()).unwrap();
        Ok(Agent {
            node_id: enrolled.node_id.clone(),
            key_pem: key.key_pem,
            cert_pem: enrolled.certificate_pem.clone(),
            client: client_at(&enrolled.ca_pem, Some(identity), local),
            pinned,
            enrolled,
            base: base.to_owned(),
        })
    }

    /// The same agent talking to another replica.
    pub fn against(&self, server: &TestServer) -> Agent {
        let identity = Identity::from_pem(format!("{}{}", self.cert_pem, self.key_pem).as_bytes()).unwrap();
        Agent {
            node_id: self.node_id.clone(),
            key_pem: self.key_pem.clone(),
            cert_pem: self.cert_pem.clone(),
            enrolled: self.enrolled.clone(),
            pinned: self.pinned,
            client: client(&self.enrolled.ca_pem, Some(identity)),
            base: server.base.clone(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn get(&self, path: &str) -> Result<reqwest::Response, reqwest::Error> {
        self.client.get(self.url(path)).send().await
    }

    pub async fn post<T: Serialize>(
        &self,
        path: &str,
        body: &T,
    ) -> Result<reqwest::Response, reqwest::Error> {
        self.client.post(self.url(path)).json(body).send().await
    }

    /// Long-polls for a bundle newer than `after`; `None` on 204.
    pub async fn poll(&self, after: u64, wait: u64) -> Option<SignedBundle> {
        let resp = self.get(&format!("/v1/bundle?after={after}&wait={wait}")).await.unwrap();
        match resp.status() {
            StatusCode::OK => Some(resp.json().await.unwrap()),
            StatusCode::NO_CONTENT => None,
            other => panic!("bundle poll: {other}: {}", resp.text().await.unwrap()),
        }
    }
}
