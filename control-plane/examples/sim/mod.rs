//! What the control-plane examples share: the server in-process on 127.0.0.1, HTTPS clients,
//! and simulated agents enrolled with join tokens (panics on any failure: benchmarks).

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Certificate, Client, Identity};
use ringfence_control::{Running, ServeArgs};
use ringfence_proto::api::{EnrollRequest, EnrollResponse, TokenRequest, TokenResponse};
use tokio::sync::Semaphore;

/// Sends `body` as JSON and reads the JSON answer.
pub async fn post_json<B: serde::Serialize, T: serde::de::DeserializeOwned>(
    req: reqwest::RequestBuilder,
    body: &B,
) -> T {
    req.json(body).send().await.unwrap().error_for_status().unwrap().json().await.unwrap()
}

/// A client; simulated agent `i` connects from its own loopback address (as 1000 nodes would
/// from theirs: the control plane's per-source connection limit is about nodes, not the test).
pub fn client(ca: &str, identity: Option<Identity>, agent: Option<usize>) -> Client {
    let local = agent.map(|i| std::net::IpAddr::from([127, 1, (i / 250) as u8, (i % 250 + 1) as u8]));
    let mut b = Client::builder()
        .local_address(local)
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(Certificate::from_pem(ca.as_bytes()).unwrap())
        .min_tls_version(reqwest::tls::Version::TLS_1_3)
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(120));
    if let Some(i) = identity {
        b = b.identity(i);
    }
    b.build().unwrap()
}

/// A control plane running in this process.
pub struct Server {
    pub running: Running,
    pub base: String,
    pub ca: String,
    pub admin_token: String,
    pub admin: Client,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Starts it on a temporary state directory (and `db`, else SQLite there) with `extra` flags.
    pub async fn start(db: Option<&str>, extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut argv = vec!["--listen".to_owned(), "127.0.0.1:0".into(), "--state-dir".into()];
        argv.push(dir.path().join("state").display().to_string());
        if let Some(db) = db {
            argv.extend(["--db".into(), db.to_owned()]);
        }
        argv.extend(extra.iter().map(|s| s.to_string()));
        let config = ServeArgs::from_flags(argv).unwrap().validate().unwrap();
        let running = ringfence_control::start(config).await.unwrap();
        let base = format!("https://127.0.0.1:{}", running.addr.port());
        let ca = std::fs::read_to_string(&running.ca_path).unwrap();
        let admin_token = std::fs::read_to_string(&running.admin_token_path).unwrap().trim().to_owned();
        let admin = client(&ca, None, None);
        Server { running, base, ca, admin_token, admin, _dir: dir }
    }

    /// Enrolls `agents` simulated agents (16 at a time) in `region`: each one's client (with its
    /// certificate, from its own loopback address) and pinned bundle key.
    pub async fn enroll(&self, agents: usize, region: &str) -> Vec<(Client, ed25519_dalek::VerifyingKey)> {
        let started = Instant::now();
        let limit = Arc::new(Semaphore::new(16));
        let mut enrolling = Vec::new();
        for i in 0..agents {
            let (admin, base, ca, admin_token, limit) = (
                self.admin.clone(),
                self.base.clone(),
                self.ca.clone(),
                self.admin_token.clone(),
                limit.clone(),
            );
            let region = region.to_owned();
            enrolling.push(tokio::spawn(async move {
                let _permit = limit.acquire().await.unwrap();
                let req = TokenRequest { region, labels: Default::default(), ttl_seconds: None };
                let token: TokenResponse =
                    post_json(admin.post(format!("{base}/v1/tokens")).bearer_auth(&admin_token), &req).await;
                let key = ringfence_proto::csr::generate(&format!("sim-{i}")).unwrap();
                let req = EnrollRequest {
                    token: token.token,
                    csr_pem: key.csr_pem,
                    agent_version: None,
                    hostname: None,
                    wireguard: None,
                };
                let enrolled: EnrollResponse = post_json(admin.post(format!("{base}/v1/enroll")), &req).await;
                let identity =
                    Identity::from_pem(format!("{}{}", enrolled.certificate_pem, key.key_pem).as_bytes())
                        .unwrap();
                (
                    client(&ca, Some(identity), Some(i)),
                    ringfence_proto::parse_public_key(&enrolled.bundle_signing_key).unwrap(),
                )
            }));
        }
        let mut clients = Vec::new();
        for e in enrolling {
            clients.push(e.await.unwrap());
        }
        println!("enrolled {agents} agents in {:.1?}", started.elapsed());
        clients
    }
}
