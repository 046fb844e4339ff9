//! [`ControlClient`]: the agent endpoints over HTTPS with the node's client certificate (mTLS),
//! trusting only the control plane's CA, TLS 1.3 only. Every call has a timeout; errors say
//! whether retrying can help ([`ControlError::is_transient`]).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use reqwest::{Client, RequestBuilder, StatusCode};
use ringfence_proto::api::{
    BundleAck, ErrorBody, EventBatch, EventsAccepted, LiveFlowBatch, LiveFlowsAccepted, NodeReport,
    RenewRequest, RenewResponse,
};
use ringfence_proto::SignedBundle;
use serde::de::DeserializeOwned;

use super::error::ControlError;
use super::identity::Identity;

/// Timeout of a call other than the long-poll.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// Time allowed beyond the requested wait for a long-poll to answer.
pub const POLL_MARGIN: Duration = Duration::from_secs(15);

/// An HTTPS client trusting only `ca_pem`, with `identity` (certificate PEM + key PEM) if given.
pub(crate) fn http_client(ca_pem: &str, identity: Option<(&str, &str)>) -> Result<Client, ControlError> {
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes())
        .map_err(|e| ControlError::Config(format!("the control plane CA certificate is not PEM: {e}")))?;
    let mut builder = Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .min_tls_version(reqwest::tls::Version::TLS_1_3)
        .https_only(true)
        .connect_timeout(Duration::from_secs(5))
        .timeout(CALL_TIMEOUT);
    if let Some((cert, key)) = identity {
        let id = reqwest::Identity::from_pem(format!("{cert}\n{key}").as_bytes())
            .map_err(|e| ControlError::Config(format!("the node certificate or key is unusable: {e}")))?;
        builder = builder.identity(id);
    }
    builder.build().map_err(|e| ControlError::Config(format!("cannot build the HTTPS client: {}", chain(&e))))
}

/// An error and its causes, `: `-separated (reqwest's own message alone says little).
fn chain(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// Sends a request and checks the status: 4xx is [`ControlError::Refused`], 5xx
/// [`ControlError::Server`], no answer [`ControlError::Unreachable`].
pub(crate) async fn send(
    base: &str,
    what: &'static str,
    request: RequestBuilder,
) -> Result<reqwest::Response, ControlError> {
    let response = request
        .send()
        .await
        .map_err(|e| ControlError::Unreachable { url: base.to_owned(), message: chain(&e) })?;
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok())
        .map(|s| Duration::from_secs(s.clamp(1, 300)));
    let body = response.text().await.unwrap_or_default();
    let message = match serde_json::from_str::<ErrorBody>(&body) {
        Ok(e) => e.error,
        Err(_) if body.trim().is_empty() => status.canonical_reason().unwrap_or("no explanation").to_owned(),
        Err(_) => body.chars().take(300).collect(),
    };
    let status = status.as_u16();
    if status == 429 {
        let retry_after = retry_after.unwrap_or(Duration::from_secs(5));
        Err(ControlError::RateLimited { what, retry_after, message })
    } else if (400..500).contains(&status) {
        Err(ControlError::Refused { what, status, message })
    } else {
        Err(ControlError::Server { what, status, message })
    }
}

/// Reads a JSON answer.
pub(crate) async fn json<T: DeserializeOwned>(
    base: &str,
    what: &'static str,
    response: reqwest::Response,
) -> Result<T, ControlError> {
    let body = response
        .bytes()
        .await
        .map_err(|e| ControlError::Unreachable { url: base.to_owned(), message: chain(&e) })?;
    serde_json::from_slice(&body).map_err(|e| ControlError::Server {
        what,
        status: 0,
        message: format!("unexpected answer: {e} (is the control plane the same version as the agent?)"),
    })
}

/// The control-plane client of an enrolled node. Cheap to clone; clones share the identity, so
/// a renewal through one is used by all.
#[derive(Clone)]
pub struct ControlClient {
    base: Arc<str>,
    state: Arc<RwLock<(Identity, Client)>>,
}

impl ControlClient {
    /// A client for this identity.
    pub fn new(identity: Identity) -> Result<ControlClient, ControlError> {
        let http = http_client(&identity.ca_pem, Some((&identity.cert_pem, &identity.key_pem)))?;
        let base: Arc<str> = identity.meta.server_url.trim_end_matches('/').into();
        Ok(ControlClient { base, state: Arc::new(RwLock::new((identity, http))) })
    }

    /// The identity in use (with the newest certificate).
    pub fn identity(&self) -> Identity {
        self.state.read().expect("identity lock").0.clone()
    }

    /// The control plane's base URL.
    pub fn server_url(&self) -> &str {
        &self.base
    }

    fn http(&self) -> Client {
        self.state.read().expect("identity lock").1.clone()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET /v1/bundle?after=..&wait=..`: the signed bundle once its version is above `after`,
    /// `None` if `wait` passes without one.
    pub async fn bundle(&self, after: u64, wait: Duration) -> Result<Option<SignedBundle>, ControlError> {
        let url = self.url(&format!("/v1/bundle?after={after}&wait={}", wait.as_secs()));
        let request = self.http().get(url).timeout(wait + POLL_MARGIN);
        let response = send(&self.base, "the bundle poll", request).await?;
        if response.status() == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        json(&self.base, "the bundle poll", response).await.map(Some)
    }

    /// `POST /v1/ack`: what the agent did with a bundle.
    pub async fn ack(&self, ack: &BundleAck) -> Result<(), ControlError> {
        send(&self.base, "the bundle acknowledgement", self.http().post(self.url("/v1/ack")).json(ack))
            .await?;
        Ok(())
    }

    /// `POST /v1/report`: the node's state.
    pub async fn report(&self, report: &NodeReport) -> Result<(), ControlError> {
        send(&self.base, "the node report", self.http().post(self.url("/v1/report")).json(report)).await?;
        Ok(())
    }

    /// `POST /v1/events`: which of the events are now stored (accepted or duplicates).
    pub async fn events(&self, batch: &EventBatch) -> Result<EventsAccepted, ControlError> {
        let request = self.http().post(self.url("/v1/events")).json(batch);
        let response = send(&self.base, "the event upload", request).await?;
        json(&self.base, "the event upload", response).await
    }

    /// `POST /v1/flows`: allow verdicts for the live flow view (not stored by the control plane).
    pub async fn live_flows(&self, batch: &LiveFlowBatch) -> Result<LiveFlowsAccepted, ControlError> {
        let request = self.http().post(self.url("/v1/flows")).json(batch);
        let response = send(&self.base, "the live flow upload", request).await?;
        json(&self.base, "the live flow upload", response).await
    }

    /// `POST /v1/renew` with a CSR for the same key; saves the new certificate and uses it for
    /// every later call. Returns its expiry (Unix ms).
    pub async fn renew(&self) -> Result<i64, ControlError> {
        let mut identity = self.identity();
        let csr_pem = ringfence_proto::csr::csr_for_key_pem(&identity.key_pem, &identity.meta.hostname)?;
        let request = self.http().post(self.url("/v1/renew")).json(&RenewRequest { csr_pem });
        let response = send(&self.base, "the certificate renewal", request).await?;
        let renewed: RenewResponse = json(&self.base, "the certificate renewal", response).await?;
        let http = http_client(&identity.ca_pem, Some((&renewed.certificate_pem, &identity.key_pem)))?;
        identity.replace_certificate(renewed.certificate_pem)?;
        let not_after = identity.cert_not_after_ms;
        *self.state.write().expect("identity lock") = (identity, http);
        Ok(not_after)
    }
}
