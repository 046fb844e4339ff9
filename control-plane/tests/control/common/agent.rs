//! An enrolled agent: its key stays in the test; its certificate came from the control plane.

use reqwest::{Client, Identity, StatusCode};
use ringfence_proto::api::{EnrollRequest, EnrollResponse, WireGuardInfo};
use ringfence_proto::SignedBundle;
use serde::Serialize;

use super::fixtures::wg;
use super::http::{client, client_at};
use super::server::TestServer;

impl TestServer {
    /// Enrolls a new agent with a fresh token for `region`/`labels`.
    pub async fn agent(&self, region: &str, labels: &[(&str, &str)], wg_key: &str) -> Agent {
        let token = self.token(region, labels, None).await;
        Agent::enroll(self, &token, Some(wg(wg_key))).await.unwrap_or_else(|(s, e)| panic!("enroll: {s} {e}"))
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
