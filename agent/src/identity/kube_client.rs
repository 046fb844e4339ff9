//! The I/O shell of the pod watch: HTTP against the Kubernetes API with reqwest, driven by the
//! [`PodWatch`] state machine. Runs until shutdown; never gives up on the API (a node whose API
//! server is down keeps its last pods, and pods it has not seen fall to the node default).
use std::path::PathBuf;
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use tokio::sync::watch;

use crate::identity::config::KubernetesConfig;
use crate::identity::error::{read_text, IdentityError};
use crate::identity::kube_api::{list_url, watch_url};
use crate::identity::kube_watch::{Backoff, LineSplitter, Outcome, PodWatch, Request};
use crate::identity::pod_cache::PodCache;

/// Timeouts and backoff of the watch.
#[derive(Clone, Debug)]
pub struct WatchOptions {
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    /// Asked of the server (`timeoutSeconds`): it ends each watch after this long.
    pub watch_timeout_seconds: u32,
    /// Timeout of a list request, and of connecting.
    pub request_timeout: Duration,
    /// A watch that delivers nothing for this long is considered dead.
    pub idle_timeout: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            min_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            watch_timeout_seconds: 290,
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(330),
        }
    }
}

/// Where the API server is and how to authenticate to it.
#[derive(Clone, Debug)]
pub struct ApiEndpoint {
    pub base: String,
    /// Re-read before every request (projected service-account tokens rotate).
    pub token_file: Option<PathBuf>,
    /// The CA to trust (PEM); `None`: plain HTTP (tests, `kubectl proxy`).
    pub ca_pem: Option<Vec<u8>>,
}

impl ApiEndpoint {
    /// From the configuration: `apiServer`, or in-cluster from `KUBERNETES_SERVICE_HOST` and
    /// `KUBERNETES_SERVICE_PORT`; the token file and CA of the service account.
    pub fn from_config(config: &KubernetesConfig) -> Result<Self, IdentityError> {
        let base = match &config.api_server {
            Some(url) => url.clone(),
            None => {
                let env = |name: &str| {
                    std::env::var(name).map_err(|_| {
                        IdentityError::Kubernetes(format!(
                            "no apiServer configured and {name} is not set (not in a pod?)"
                        ))
                    })
                };
                let host = env("KUBERNETES_SERVICE_HOST")?;
                let port = env("KUBERNETES_SERVICE_PORT")?;
                let host = if host.contains(':') { format!("[{host}]") } else { host };
                format!("https://{host}:{port}")
            }
        };
        let ca_pem =
            if base.starts_with("https://") { Some(read_text(&config.ca_file)?.into_bytes()) } else { None };
        Ok(ApiEndpoint { base, token_file: Some(config.token_file.clone()), ca_pem })
    }

    /// Plain HTTP, no authentication.
    pub fn plain(base: impl Into<String>) -> Self {
        ApiEndpoint { base: base.into(), token_file: None, ca_pem: None }
    }
}

/// The node name of `config`: `$VAR` is read from the environment.
pub fn node_name(config: &KubernetesConfig) -> Result<String, IdentityError> {
    match config.node_name.strip_prefix('$') {
        None => Ok(config.node_name.clone()),
        Some(var) => std::env::var(var)
            .ok()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| IdentityError::Kubernetes(format!("nodeName is ${var} but {var} is not set"))),
    }
}

fn client(endpoint: &ApiEndpoint, options: &WatchOptions) -> Result<Client, IdentityError> {
    let mut builder = Client::builder()
        .connect_timeout(options.request_timeout)
        .read_timeout(options.idle_timeout)
        .tcp_keepalive(Duration::from_secs(30));
    if let Some(pem) = &endpoint.ca_pem {
        let ca = reqwest::Certificate::from_pem(pem)
            .map_err(|e| IdentityError::Kubernetes(format!("the cluster CA is not PEM: {e}")))?;
        builder =
            builder.use_rustls_tls().tls_built_in_root_certs(false).add_root_certificate(ca).https_only(true);
    }
    builder.build().map_err(|e| IdentityError::Kubernetes(format!("cannot build the HTTP client: {e}")))
}

/// Keeps `cache` equal to the pods on `node` until `shutdown` turns true (or its sender is
/// dropped). Fails only if the HTTP client cannot be built (a bad CA).
pub async fn run_pod_watch(
    endpoint: ApiEndpoint,
    node: String,
    cache: PodCache,
    options: WatchOptions,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), IdentityError> {
    let client = client(&endpoint, &options)?;
    let mut state = PodWatch::new();
    let mut backoff = Backoff::new(options.min_backoff, options.max_backoff);
    let call = Call { client: &client, endpoint: &endpoint, node: &node, options: &options };
    loop {
        let attempt = async {
            match state.next_request() {
                Request::List => call.list(&mut state, &cache).await,
                Request::Watch(rv) => call.watch(&rv, &mut state, &cache).await,
            }
        };
        let result = tokio::select! {
            biased;
            _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
            result = attempt => result,
        };
        match result {
            Ok(()) => backoff.reset(),
            Err(e) => {
                let delay = backoff.next_delay();
                tracing::warn!(node = %node, error = %e, retry_in = ?delay, "pod watch");
                tokio::select! {
                    biased;
                    _ = shutdown.wait_for(|stop| *stop) => return Ok(()),
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

struct Call<'a> {
    client: &'a Client,
    endpoint: &'a ApiEndpoint,
    node: &'a str,
    options: &'a WatchOptions,
}

impl Call<'_> {
    async fn get(&self, url: &str) -> Result<reqwest::Response, String> {
        let mut request = self.client.get(url).header("Accept", "application/json");
        if let Some(file) = &self.endpoint.token_file {
            let token = read_text(file).map_err(|e| e.to_string())?;
            request = request.bearer_auth(token.trim());
        }
        request.send().await.map_err(|e| format!("GET {url}: {e}"))
    }

    async fn list(&self, state: &mut PodWatch, cache: &PodCache) -> Result<(), String> {
        let url = list_url(&self.endpoint.base, self.node);
        let body = tokio::time::timeout(self.options.request_timeout, async {
            let response = self.get(&url).await?;
            let status = response.status();
            let body = response.bytes().await.map_err(|e| format!("GET {url}: reading the body: {e}"))?;
            if !status.is_success() {
                return Err(format!(
                    "GET {url}: {status}: {}",
                    String::from_utf8_lossy(&body[..body.len().min(512)])
                ));
            }
            Ok(body)
        })
        .await
        .map_err(|_| format!("GET {url}: no answer in {:?}", self.options.request_timeout))??;
        let n = state.on_list(&body, cache).map_err(|e| e.to_string())?;
        tracing::info!(node = %self.node, pods = n, resource_version = ?state.resource_version(), "pods listed");
        Ok(())
    }

    /// One watch, to its end. A watch that ends at once with nothing is an error (backoff).
    async fn watch(&self, rv: &str, state: &mut PodWatch, cache: &PodCache) -> Result<(), String> {
        let url = watch_url(&self.endpoint.base, self.node, rv, self.options.watch_timeout_seconds);
        let started = Instant::now();
        let mut response = self.get(&url).await?;
        if response.status() == StatusCode::GONE {
            tracing::info!(resource_version = rv, "pod watch: version expired (410), listing again");
            state.on_gone();
            return Ok(());
        }
        if !response.status().is_success() {
            return Err(format!("GET {url}: {}", response.status()));
        }
        let mut lines = LineSplitter::default();
        let mut seen = 0usize;
        loop {
            let chunk = response.chunk().await.map_err(|e| format!("pod watch stream: {e}"))?;
            let batch = match &chunk {
                Some(bytes) => lines.push(bytes).map_err(|e| e.to_string())?,
                None => lines.finish().into_iter().collect(),
            };
            for line in batch {
                seen += 1;
                if state.on_line(&line, cache).map_err(|e| e.to_string())? == Outcome::Relist {
                    tracing::info!(resource_version = rv, "pod watch: version expired, listing again");
                    return Ok(());
                }
            }
            if chunk.is_none() {
                break;
            }
        }
        if seen == 0 && started.elapsed() < Duration::from_secs(1) {
            return Err("pod watch ended at once without events".into());
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "kube_client_tests.rs"]
mod tests;
