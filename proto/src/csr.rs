//! An agent's TLS identity: it generates its key pair on the node (the private key never leaves
//! it) and sends a certificate signing request with `POST /v1/enroll` or `POST /v1/renew`.

/// Why a key or CSR could not be made.
#[derive(Debug, thiserror::Error)]
#[error("cannot generate the agent key or CSR: {0}")]
pub struct CsrError(#[from] rcgen::Error);

/// A new ECDSA P-256 key pair and a CSR for it.
pub struct AgentKey {
    /// The private key (PKCS#8 PEM); keep it 0600 on the node.
    pub key_pem: String,
    /// The certificate signing request (PEM) to send.
    pub csr_pem: String,
}

/// Generates a key pair and a CSR whose subject is `hostname` (the control plane sets the
/// certificate's subject to the node id regardless).
pub fn generate(hostname: &str) -> Result<AgentKey, CsrError> {
    let key = rcgen::KeyPair::generate()?;
    let csr_pem = csr_for(&key, hostname)?;
    Ok(AgentKey { key_pem: key.serialize_pem(), csr_pem })
}

/// A CSR for an existing key (PEM), to renew with the same key.
pub fn csr_for_key_pem(key_pem: &str, hostname: &str) -> Result<String, CsrError> {
    let key = rcgen::KeyPair::from_pem(key_pem)?;
    csr_for(&key, hostname)
}

fn csr_for(key: &rcgen::KeyPair, hostname: &str) -> Result<String, CsrError> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, hostname);
    Ok(params.serialize_request(key)?.pem()?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn generates_pem_key_and_csr() {
        let k = super::generate("node-a").unwrap();
        assert!(k.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{}", k.key_pem);
        assert!(k.csr_pem.starts_with("-----BEGIN CERTIFICATE REQUEST-----"), "{}", k.csr_pem);
        let again = super::csr_for_key_pem(&k.key_pem, "node-a").unwrap();
        assert!(again.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
        assert!(super::csr_for_key_pem("junk", "x").is_err());
    }
}
