//! The operator's HTTPS client: trusts only the control plane's CA, speaks only TLS 1.3, sends
//! the admin credential; its errors say what to do.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::{Certificate, StatusCode};
use ringfence_proto::api::ErrorBody;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::commands::ServerArgs;

/// Exit status: the control plane refused the request.
pub const EXIT_REFUSED: u8 = 1;
/// Exit status: bad argument or invalid policy.
pub const EXIT_USAGE: u8 = 64;
/// Exit status: an input file is unreadable.
pub const EXIT_NO_INPUT: u8 = 66;
/// Exit status: the control plane cannot be reached.
pub const EXIT_UNAVAILABLE: u8 = 69;

/// Why an operator command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// No connection.
    #[error("cannot reach the control plane at {url}: {reason} (is `ringfence-control serve` running? pass --server URL or set RINGFENCE_SERVER)")]
    Unreachable {
        /// The server URL.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The CA file.
    #[error("cannot read the control plane CA certificate {}: {reason} (pass --ca FILE or set RINGFENCE_CA: ca.pem in the control plane's --state-dir)", path.display())]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The admin credential file.
    #[error("cannot read the admin credential {}: {reason} (pass --admin-token-file FILE or set RINGFENCE_ADMIN_TOKEN_FILE: admin.token in the control plane's --state-dir)", path.display())]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// 401 from the server.
    #[error("the control plane refused the admin credential: {0} (check --admin-token-file)")]
    Unauthorized(String),
    /// Another refusal.
    #[error("the control plane refused the request ({status}): {}", body.error)]
    Refused {
        /// HTTP status.
        status: StatusCode,
        /// The error body.
        body: ErrorBody,
    },
    /// A bad argument.
    #[error("{0}")]
    Usage(String),
    /// An unreadable input file.
    #[error("{}: {reason}", path.display())]
    Input {
        /// The file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The audit log does not verify.
    #[error("audit log verification FAILED at record {seq}: {reason}")]
    AuditBroken {
        /// The first bad record.
        seq: u64,
        /// What is wrong.
        reason: String,
    },
    /// Writing output failed.
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
    /// An evidence pack does not verify.
    #[error("evidence pack verification FAILED: {0}")]
    EvidenceBroken(String),
    /// The server answered something unexpected.
    #[error("unexpected answer from the control plane: {0}")]
    Protocol(String),
}

impl CliError {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Unreachable { .. } => EXIT_UNAVAILABLE,
            CliError::CaFile { .. } | CliError::TokenFile { .. } | CliError::Input { .. } => EXIT_NO_INPUT,
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Refused { status, .. } if *status == StatusCode::UNPROCESSABLE_ENTITY => EXIT_USAGE,
            _ => EXIT_REFUSED,
        }
    }
}

/// A connection to the control plane's admin API.
pub struct ApiClient {
    base: String,
    http: reqwest::Client,
    token: String,
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| e.to_string())
}

/// The full error chain of a reqwest error, on one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl ApiClient {
    /// Reads the CA and the admin credential named by `args`; requests time out after 30 s.
    pub fn new(args: &ServerArgs) -> Result<ApiClient, CliError> {
        Self::with_timeout(args, Some(Duration::from_secs(30)))
    }

    /// As [`ApiClient::new`], for responses that stream as long as the operator watches: only
    /// connecting is bounded.
    pub fn streaming(args: &ServerArgs) -> Result<ApiClient, CliError> {
        Self::with_timeout(args, None)
    }

    fn with_timeout(args: &ServerArgs, timeout: Option<Duration>) -> Result<ApiClient, CliError> {
        let ca_pem = read(&args.ca).map_err(|reason| CliError::CaFile { path: args.ca.clone(), reason })?;
        let ca = Certificate::from_pem(ca_pem.as_bytes())
            .map_err(|e| CliError::CaFile { path: args.ca.clone(), reason: e.to_string() })?;
        let token = read(&args.admin_token_file)
            .map_err(|reason| CliError::TokenFile { path: args.admin_token_file.clone(), reason })?
            .trim()
            .to_owned();
        let builder = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .min_tls_version(reqwest::tls::Version::TLS_1_3)
            .connect_timeout(Duration::from_secs(30));
        let http = match timeout {
            Some(t) => builder.timeout(t),
            None => builder,
        }
        .build()
        .map_err(|e| CliError::Usage(format!("cannot build the HTTPS client: {e}")))?;
        Ok(ApiClient { base: args.server.trim_end_matches('/').to_owned(), http, token })
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, CliError> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| CliError::Unreachable { url: self.base.clone(), reason: chain(&e) })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str::<ErrorBody>(&text)
            .unwrap_or(ErrorBody { error: text.trim().to_owned(), diagnostics: Vec::new() });
        if status == StatusCode::UNAUTHORIZED {
            return Err(CliError::Unauthorized(body.error));
        }
        Err(CliError::Refused { status, body })
    }

    /// GET returning JSON.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, CliError> {
        let response = self.send(self.http.get(format!("{}{path}", self.base))).await?;
        response.json().await.map_err(|e| CliError::Protocol(e.to_string()))
    }

    /// GET returning the response, for streaming its body.
    pub async fn get_stream(&self, path: &str) -> Result<reqwest::Response, CliError> {
        self.send(self.http.get(format!("{}{path}", self.base))).await
    }

    /// GET returning text.
    pub async fn get_text(&self, path: &str) -> Result<String, CliError> {
        let response = self.send(self.http.get(format!("{}{path}", self.base))).await?;
        response.text().await.map_err(|e| CliError::Protocol(e.to_string()))
    }

    /// DELETE, ignoring any body.
    pub async fn delete(&self, path: &str) -> Result<(), CliError> {
        self.send(self.http.delete(format!("{}{path}", self.base))).await.map(drop)
    }

    /// POST of JSON returning JSON.
    pub async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T, CliError> {
        let response = self.send(self.http.post(format!("{}{path}", self.base)).json(body)).await?;
        response.json().await.map_err(|e| CliError::Protocol(e.to_string()))
    }
}
