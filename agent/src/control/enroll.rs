//! Enrollment: a fresh key pair on the node, a CSR for it, `POST /v1/enroll` with the one-time
//! join token (trusting only the CA the operator handed over), and the identity saved.

use std::path::Path;

use ringfence_proto::api::{EnrollRequest, EnrollResponse, WireGuardInfo};

use super::client::{http_client, json, send, CALL_TIMEOUT};
use super::error::ControlError;
use super::identity::{cert_not_after_ms, control_dir, Identity, NodeMeta};
use crate::files::read_optional;

/// Checks and normalizes the server URL: `https://host[:port]`, without a trailing slash.
pub fn server_url(text: &str) -> Result<String, ControlError> {
    let url = reqwest::Url::parse(text.trim()).map_err(|e| {
        ControlError::Config(format!("--server {text:?}: {e} (expected e.g. https://control.example:8443)"))
    })?;
    if url.scheme() != "https" || url.host().is_none() {
        return Err(ControlError::Config(format!(
            "--server {text:?}: expected an https:// URL with a host (the control plane speaks only HTTPS)"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ControlError::Config(format!("--server {text:?}: no query or fragment expected")));
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// Enrolls this node and saves its identity in `<state_dir>/control/`.
///
/// Refuses if the node is enrolled already. The join token is one-time: if saving fails after
/// the control plane accepted it, a new token is needed.
pub async fn enroll(
    server_url_text: &str,
    token: &str,
    ca_pem_path: &Path,
    state_dir: &Path,
    hostname: &str,
    wireguard: Option<WireGuardInfo>,
) -> Result<Identity, ControlError> {
    let base = server_url(server_url_text)?;
    let dir = control_dir(state_dir);
    match Identity::load(state_dir) {
        Err(ControlError::NotEnrolled { .. }) => {}
        Ok(existing) => {
            return Err(ControlError::AlreadyEnrolled { node_id: existing.meta.node_id, dir });
        }
        Err(other) => return Err(other),
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(ControlError::Config(
            "--token is empty: ask an operator for a join token (`ringfence token create --region R`)".into(),
        ));
    }
    let ca_pem = read_optional(ca_pem_path)?.ok_or_else(|| {
        ControlError::Config(format!(
            "--ca {}: no such file (copy ca.pem from the control plane's state directory)",
            ca_pem_path.display()
        ))
    })?;
    cert_not_after_ms(&ca_pem).map_err(|e| {
        ControlError::Config(format!("--ca {}: not a PEM certificate: {e}", ca_pem_path.display()))
    })?;
    let key = ringfence_proto::csr::generate(hostname)?;
    let request = EnrollRequest {
        token: token.to_owned(),
        csr_pem: key.csr_pem,
        agent_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        hostname: Some(hostname.to_owned()),
        wireguard,
    };
    let http = http_client(&ca_pem, None)?;
    let post = http.post(format!("{base}/v1/enroll")).json(&request).timeout(CALL_TIMEOUT);
    let response = send(&base, "the enrollment", post).await.map_err(|e| not_enrolled(e, ca_pem_path))?;
    let enrolled: EnrollResponse = json(&base, "the enrollment", response).await?;
    let identity = identity_from(&base, hostname, &dir, key.key_pem, enrolled)?;
    identity.save().map_err(|e| {
        ControlError::Config(format!(
            "enrolled as {} but could not save the identity: {e}; fix that, then enroll again with a new token",
            identity.meta.node_id
        ))
    })?;
    tracing::info!(node = identity.meta.node_id, region = identity.meta.region, server = base, "enrolled");
    Ok(identity)
}

/// An enrollment that got no answer, said as what it is: nothing was enrolled and nothing is
/// enforced from a control plane (a wrong `--ca` named as such).
fn not_enrolled(e: ControlError, ca: &Path) -> ControlError {
    match e {
        ControlError::Unreachable { url, message }
            if message.contains("UnknownIssuer") || message.contains("invalid peer certificate") =>
        {
            ControlError::Config(format!(
                "--ca {}: the control plane at {url} presented a certificate this CA did not sign ({message}); copy ca.pem from the control plane's state directory. Nothing was enrolled",
                ca.display()
            ))
        }
        ControlError::Unreachable { url, message } => ControlError::NoEnrollment { url, message },
        other => other,
    }
}

/// The identity described by an enrollment answer.
fn identity_from(
    base: &str,
    hostname: &str,
    dir: &Path,
    key_pem: String,
    enrolled: EnrollResponse,
) -> Result<Identity, ControlError> {
    let bad = |what: &str, e: String| ControlError::Server {
        what: "the enrollment",
        status: 0,
        message: format!("{what}: {e}"),
    };
    let signing_key = ringfence_proto::parse_public_key(&enrolled.bundle_signing_key)
        .map_err(|e| bad("bundle signing key", e.to_string()))?;
    let key_id = ringfence_proto::key_id(&signing_key);
    if key_id != enrolled.bundle_signing_key_id {
        let e = format!("its id is {key_id}, the server says {}", enrolled.bundle_signing_key_id);
        return Err(bad("bundle signing key", e));
    }
    let cert_not_after_ms =
        cert_not_after_ms(&enrolled.certificate_pem).map_err(|e| bad("certificate", e))?;
    let now = ringfence_proto::now_ms();
    Ok(Identity {
        dir: dir.to_path_buf(),
        meta: NodeMeta {
            node_id: enrolled.node_id,
            region: enrolled.region,
            labels: enrolled.labels,
            server_url: base.to_owned(),
            key_id,
            hostname: hostname.to_owned(),
            enrolled_ms: now,
            cert_received_ms: now,
        },
        key_pem,
        cert_pem: enrolled.certificate_pem,
        cert_not_after_ms,
        ca_pem: enrolled.ca_pem,
        signing_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_are_checked_and_normalized() {
        assert_eq!(server_url("https://cp.example:8443/").unwrap(), "https://cp.example:8443");
        assert_eq!(server_url(" https://10.0.0.1:8443 ").unwrap(), "https://10.0.0.1:8443");
        for bad in ["http://cp:8443", "cp:8443", "https://cp:8443/?x=1", ""] {
            let err = server_url(bad).unwrap_err();
            assert!(matches!(err, ControlError::Config(_)), "{bad}: {err}");
        }
    }

    #[tokio::test]
    async fn bad_arguments_are_refused_before_anything_is_sent() {
        let state = tempfile::tempdir().unwrap();
        let missing = state.path().join("ca.pem");
        let err =
            enroll("https://127.0.0.1:9", "rfj_x", &missing, state.path(), "h", None).await.unwrap_err();
        assert!(err.to_string().contains("no such file"), "{err}");
        std::fs::write(&missing, "junk").unwrap();
        let err =
            enroll("https://127.0.0.1:9", "rfj_x", &missing, state.path(), "h", None).await.unwrap_err();
        assert!(err.to_string().contains("not a PEM certificate"), "{err}");
        let err = enroll("https://127.0.0.1:9", " ", &missing, state.path(), "h", None).await.unwrap_err();
        assert!(err.to_string().contains("--token is empty"), "{err}");
        assert_eq!(err.exit_code(), crate::error::EXIT_CONFIG);
    }
}
