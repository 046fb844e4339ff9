//! TLS 1.3 only, rustls with the ring provider. Client certificates are optional at the TLS
//! layer; one that is presented must chain to the control plane's CA, be valid now and allow
//! client authentication, or the handshake fails. Agent endpoints then require one.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

use crate::pki::Ca;

/// Why the TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rustls refused.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client verifier could not be built.
    #[error("TLS client verifier: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// A PEM block did not parse.
    #[error("PEM: {0}")]
    Pem(String),
}

/// The rustls crypto provider used everywhere (ring).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Certificates in a PEM text.
pub fn certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem(e.to_string()))
}

/// The private key in a PEM text.
pub fn key(pem: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    rustls_pemfile::private_key(&mut pem.as_bytes())
        .map_err(|e| TlsError::Pem(e.to_string()))?
        .ok_or_else(|| TlsError::Pem("no private key".into()))
}

/// The server configuration: a fresh server certificate for `sans` signed by the CA.
pub fn server_config(
    ca: &Ca,
    sans: &[String],
) -> Result<ServerConfig, Box<dyn std::error::Error + Send + Sync>> {
    let (cert_pem, key_pem) = ca.server_cert(sans)?;
    let mut chain = certs(&cert_pem)?;
    chain.extend(certs(&ca.pem)?);
    let mut roots = RootCertStore::empty();
    for cert in certs(&ca.pem)? {
        roots.add(cert)?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .allow_unauthenticated()
        .build()?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key(&key_pem)?)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
