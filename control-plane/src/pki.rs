//! The control plane's certificate authority: server certificates, node client certificates
//! signed from agents' CSRs, and reading a peer certificate back.

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SerialNumber,
};
use time::OffsetDateTime;

/// Why a certificate could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// rcgen refused.
    #[error("certificate error: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// The CSR is not a PEM PKCS#10 request with a valid self-signature.
    #[error("invalid certificate signing request: {0} (send a PEM PKCS#10 CSR signed by the agent's key)")]
    BadCsr(String),
    /// A peer certificate that does not parse (cannot happen after rustls verified it).
    #[error("unreadable client certificate: {0}")]
    BadPeer(String),
}

/// The CA: its key, and its certificate as issued and as distributed.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    /// The CA certificate (PEM) agents and operators trust.
    pub pem: String,
}

/// Who a verified client certificate names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerCert {
    /// The node id (the certificate's common name).
    pub node_id: String,
    /// Its expiry.
    pub not_after_ms: i64,
}

fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f; // positive
    SerialNumber::from_slice(&bytes)
}

fn ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

impl Ca {
    /// A new CA (ECDSA P-256, 10 years).
    pub fn generate() -> Result<Ca, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, "Ringfence control plane CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::from_secs(3600);
        params.not_after = now + Duration::from_secs(10 * 365 * 86400);
        params.serial_number = Some(random_serial());
        let cert = params.self_signed(&key)?;
        let pem = cert.pem();
        Ok(Ca { cert, key, pem })
    }

    /// The CA stored as PEM certificate and PEM key.
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<Ca, PkiError> {
        let key = KeyPair::from_pem(key_pem)?;
        let params = CertificateParams::from_ca_cert_pem(cert_pem)?;
        // Re-signing the parameters gives an issuer with the same name and key; the stored PEM
        // stays what clients trust.
        let cert = params.self_signed(&key)?;
        Ok(Ca { cert, key, pem: cert_pem.to_owned() })
    }

    /// The CA key (PEM), to store 0600.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// A server certificate for these names and addresses (1 year); returns (cert PEM, key PEM).
    pub fn server_cert(&self, sans: &[String]) -> Result<(String, String), PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(sans.to_vec())?;
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, "ringfence-control");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::from_secs(3600);
        params.not_after = now + Duration::from_secs(365 * 86400);
        params.serial_number = Some(random_serial());
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// A client certificate for `node_id` valid for `ttl`, for the key of `csr_pem` (whatever
    /// else the CSR asks for is ignored); returns (PEM, not-after in Unix ms).
    pub fn sign_node_csr(
        &self,
        csr_pem: &str,
        node_id: &str,
        ttl: Duration,
    ) -> Result<(String, i64), PkiError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| PkiError::BadCsr(e.to_string()))?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, node_id);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let now = OffsetDateTime::now_utc();
        // A little backdating absorbs clock skew between nodes; the lifetime counts from now.
        params.not_before = now - Duration::from_secs(60);
        params.not_after = now + ttl;
        params.serial_number = Some(random_serial());
        let not_after_ms = ms(params.not_after);
        let cert = params.signed_by(&csr.public_key, &self.cert, &self.key)?;
        Ok((cert.pem(), not_after_ms))
    }
}

/// Reads the node id and expiry of a (verified) client certificate.
pub fn parse_peer(der: &[u8]) -> Result<PeerCert, PkiError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| PkiError::BadPeer(e.to_string()))?;
    let node_id = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or_else(|| PkiError::BadPeer("no common name".into()))?
        .to_owned();
    let not_after_ms = cert.validity().not_after.timestamp() * 1000;
    Ok(PeerCert { node_id, not_after_ms })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_node_certificates_from_csrs() {
        let ca = Ca::generate().unwrap();
        let agent = ringfence_proto::csr::generate("host-a").unwrap();
        let (pem, not_after) = ca.sign_node_csr(&agent.csr_pem, "n-123", Duration::from_secs(600)).unwrap();
        let der = rustls_pemfile::certs(&mut pem.as_bytes()).next().unwrap().unwrap();
        let peer = parse_peer(&der).unwrap();
        assert_eq!(peer.node_id, "n-123", "the subject is the node id, not the CSR's");
        assert_eq!(peer.not_after_ms / 1000, not_after / 1000);
        let in_ten_minutes = ringfence_proto::now_ms() + 600_000;
        assert!(
            (peer.not_after_ms - in_ten_minutes).abs() < 5_000,
            "{} vs {in_ten_minutes}",
            peer.not_after_ms
        );
        assert!(matches!(ca.sign_node_csr("junk", "n", Duration::from_secs(1)), Err(PkiError::BadCsr(_))));
    }

    #[test]
    fn stored_ca_reloads_and_keeps_issuing() {
        let ca = Ca::generate().unwrap();
        let again = Ca::load(&ca.pem, &ca.key_pem()).unwrap();
        assert_eq!(again.pem, ca.pem);
        let (cert, key) = again.server_cert(&["localhost".into(), "127.0.0.1".into()]).unwrap();
        assert!(cert.contains("BEGIN CERTIFICATE") && key.contains("PRIVATE KEY"));
    }
}
