//! Self-test results signed by the node that ran them: the agent signs each exfiltration
//! self-test result with the private key behind its enrolled client certificate (ECDSA P-256,
//! the key never leaves the node) and carries the signature, the exact signed bytes and the
//! certificate in the event (`details.signed`). The control plane verifies it on ingest and
//! refuses a result that does not verify; `ringfence evidence verify` checks every result in a
//! pack offline against the node CA the pack includes, so a result altered after it left the
//! node fails even in a pack re-signed with the evidence key.
//!
//! The signed bytes are the JSON text of `{"id", "unix_ms", "result"}`: the event's id and time
//! and the result, each checked against the event that carries them.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The signature algorithm: ECDSA over P-256 with SHA-256, ASN.1 DER signature.
pub const SIGNATURE_ALG: &str = "ecdsa-p256-sha256";

/// `details.signed` of a self-test event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedResult {
    /// The signed bytes (JSON text of `{"id", "unix_ms", "result"}`).
    pub payload: String,
    /// Always [`SIGNATURE_ALG`].
    pub alg: String,
    /// The signature of `payload` (base64 DER).
    pub signature: String,
    /// The node's client certificate (PEM): its key made the signature.
    pub certificate_pem: String,
}

/// What a verified result says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The node the certificate names (its common name).
    pub node_id: String,
    /// The result's `passed`.
    pub passed: bool,
}

/// Why a self-test result was not signed, or does not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    /// The node's key could not sign.
    #[error("cannot sign the self-test result with the node key: {0}")]
    Key(String),
    /// The event carries no signature.
    #[error("not signed by its node (no details.signed)")]
    Unsigned,
    /// The signature block does not parse.
    #[error("malformed signature block: {0}")]
    Malformed(String),
    /// The certificate does not parse or the CA did not issue it.
    #[error("node certificate: {0}")]
    Certificate(String),
    /// The certificate names another node.
    #[error("signed with the certificate of node {cert}, but reported by node {node}")]
    WrongNode {
        /// The certificate's common name.
        cert: String,
        /// The node the event belongs to.
        node: String,
    },
    /// The signature does not verify.
    #[error("the signature does not verify (result or signature altered)")]
    BadSignature,
    /// The signed bytes say something else than the event.
    #[error("the result differs from what its node signed ({0})")]
    Altered(&'static str),
}

/// The bytes a node signs for a result of event `id` at `unix_ms`.
pub fn payload(id: &str, unix_ms: u64, result: &Value) -> String {
    json!({"id": id, "unix_ms": unix_ms, "result": result}).to_string()
}

/// Signs `payload` with the node's private key (PKCS#8 PEM) and names its certificate.
#[cfg(feature = "csr")]
pub fn sign(payload: String, key_pem: &str, certificate_pem: &str) -> Result<SignedResult, SignatureError> {
    use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
    let key = rcgen::KeyPair::from_pem(key_pem).map_err(|e| SignatureError::Key(e.to_string()))?;
    let rng = ring::rand::SystemRandom::new();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, key.serialized_der(), &rng)
        .map_err(|e| SignatureError::Key(e.to_string()))?;
    let signature = pair.sign(&rng, payload.as_bytes()).map_err(|e| SignatureError::Key(e.to_string()))?;
    Ok(SignedResult {
        payload,
        alg: SIGNATURE_ALG.into(),
        signature: STANDARD.encode(signature.as_ref()),
        certificate_pem: certificate_pem.to_owned(),
    })
}

/// The DER of the first certificate of a PEM text.
fn der(pem: &str, what: &str) -> Result<Vec<u8>, SignatureError> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| SignatureError::Certificate(format!("{what}: not PEM: {e}")))?;
    Ok(pem.contents)
}

/// Verifies the self-test event `details` (as stored: `result`, `signed`, ...) that node
/// `node_id` reported as event `id` at `time_ms`: the certificate names the node and was issued
/// by `ca_pem` (and was valid when the result was signed), its key signed the payload, and the
/// payload is the event's id, time and result.
pub fn verify(
    node_id: &str,
    id: &str,
    time_ms: i64,
    details: &Value,
    ca_pem: &str,
) -> Result<Verified, SignatureError> {
    let block = details.get("signed").ok_or(SignatureError::Unsigned)?;
    let signed: SignedResult =
        serde_json::from_value(block.clone()).map_err(|e| SignatureError::Malformed(e.to_string()))?;
    if signed.alg != SIGNATURE_ALG {
        return Err(SignatureError::Malformed(format!("alg {:?}, expected {SIGNATURE_ALG}", signed.alg)));
    }
    let (ca_der, cert_der) = (der(ca_pem, "node CA")?, der(&signed.certificate_pem, "certificate")?);
    let bad = |e: String| SignatureError::Certificate(e);
    let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).map_err(|e| bad(format!("node CA: {e}")))?;
    let (_, cert) = x509_parser::parse_x509_certificate(&cert_der).map_err(|e| bad(e.to_string()))?;
    cert.verify_signature(Some(ca.public_key()))
        .map_err(|e| bad(format!("not issued by the node CA ({e})")))?;
    let cn = cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).unwrap_or_default();
    if cn != node_id {
        return Err(SignatureError::WrongNode { cert: cn.to_owned(), node: node_id.to_owned() });
    }
    let sig = STANDARD.decode(signed.signature.trim()).map_err(|_| SignatureError::BadSignature)?;
    let key = ring::signature::UnparsedPublicKey::new(
        &ring::signature::ECDSA_P256_SHA256_ASN1,
        cert.public_key().subject_public_key.data.as_ref(),
    );
    key.verify(signed.payload.as_bytes(), &sig).map_err(|_| SignatureError::BadSignature)?;
    let p: Value = serde_json::from_str(&signed.payload)
        .map_err(|e| SignatureError::Malformed(format!("payload: {e}")))?;
    if p["id"] != id {
        return Err(SignatureError::Altered("event id"));
    }
    if p["unix_ms"].as_i64() != Some(time_ms) {
        return Err(SignatureError::Altered("time"));
    }
    if details.get("result") != Some(&p["result"]) {
        return Err(SignatureError::Altered("result"));
    }
    let validity = cert.validity();
    if time_ms < validity.not_before.timestamp() * 1000 || time_ms > validity.not_after.timestamp() * 1000 {
        return Err(bad("not valid when the result was signed".into()));
    }
    Ok(Verified { node_id: cn.to_owned(), passed: p["result"]["passed"] == true })
}

#[cfg(all(test, feature = "csr"))]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

    /// A CA, and a certificate it issued for node `n-1` with its key (PEM).
    fn pki() -> (String, String, String) {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let node_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, "n-1");
        let cert = params.signed_by(&node_key, &ca, &ca_key).unwrap();
        (ca.pem(), cert.pem(), node_key.serialize_pem())
    }

    fn details(result: &Value, signed: &SignedResult) -> Value {
        json!({"id": "selftest-exfil-5", "unix_ms": 5, "result": result, "signed": signed})
    }

    #[test]
    fn a_signed_result_verifies_and_every_alteration_is_named() {
        let (ca, cert, key) = pki();
        let now = crate::now_ms();
        let result = json!({"passed": true, "received": 1_000_000, "latency_ms": 1.25});
        let signed = sign(payload("t-1", now as u64, &result), &key, &cert).unwrap();
        let d = details(&result, &signed);
        assert_eq!(verify("n-1", "t-1", now, &d, &ca), Ok(Verified { node_id: "n-1".into(), passed: true }));
        let altered = details(&json!({"passed": true, "received": 900_000, "latency_ms": 1.25}), &signed);
        assert_eq!(verify("n-1", "t-1", now, &altered, &ca), Err(SignatureError::Altered("result")));
        assert_eq!(verify("n-1", "t-2", now, &d, &ca), Err(SignatureError::Altered("event id")));
        assert_eq!(verify("n-1", "t-1", now + 1, &d, &ca), Err(SignatureError::Altered("time")));
        assert!(matches!(verify("n-2", "t-1", now, &d, &ca), Err(SignatureError::WrongNode { .. })));
        // The payload rewritten to match an altered result: the signature no longer holds.
        let mut forged = signed.clone();
        forged.payload = payload("t-1", now as u64, &json!({"passed": true, "received": 900_000}));
        let d2 = details(&json!({"passed": true, "received": 900_000}), &forged);
        assert_eq!(verify("n-1", "t-1", now, &d2, &ca), Err(SignatureError::BadSignature));
        // Signed by a key the node CA never certified.
        let (other_ca, other_cert, other_key) = pki();
        let foreign = sign(payload("t-1", now as u64, &result), &other_key, &other_cert).unwrap();
        let err = verify("n-1", "t-1", now, &details(&result, &foreign), &ca).unwrap_err();
        assert!(matches!(&err, SignatureError::Certificate(m) if m.contains("not issued")), "{err}");
        assert!(verify("n-1", "t-1", now, &details(&result, &foreign), &other_ca).is_ok());
        // The right certificate with another key's signature.
        let mut swapped = foreign.clone();
        swapped.certificate_pem = cert.clone();
        assert_eq!(
            verify("n-1", "t-1", now, &details(&result, &swapped), &ca),
            Err(SignatureError::BadSignature)
        );
        assert_eq!(verify("n-1", "t-1", now, &json!({"result": result}), &ca), Err(SignatureError::Unsigned));
    }
}
