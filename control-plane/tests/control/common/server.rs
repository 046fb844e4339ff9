//! A real control plane in-process (`ringfence_control::start`) on 127.0.0.1 (ephemeral port,
//! temporary state directory) on SQLite or PostgreSQL, with an admin client.

use std::path::PathBuf;

use reqwest::{Client, StatusCode};
use ringfence_control::{Running, ServeArgs};
use ringfence_proto::api::{
    Labels, PolicyApplied, PolicyApplyRequest, Selector, TokenRequest, TokenResponse,
};
use serde::Serialize;

use super::backend::Backend;
use super::http::client;
use super::pg;

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

    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.stop().await;
        }
    }
}
