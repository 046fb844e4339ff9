//! HTTPS clients as agents and operators use them: only the control plane's CA, only TLS 1.3.

use std::time::Duration;

use reqwest::{Certificate, Client, Identity};

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
