//! The node's enrollment state, in `<state-dir>/control/` (directory 0700):
//!
//! | file          | contents                                             | mode |
//! |---------------|------------------------------------------------------|------|
//! | `node.key`    | the node's private key (PKCS#8 PEM), never sent      | 0600 |
//! | `node.crt`    | its client certificate (PEM), replaced on renewal    | 0644 |
//! | `ca.pem`      | the control plane's CA, the only root trusted        | 0644 |
//! | `signing.pub` | the pinned bundle-signing key (Ed25519, base64)      | 0644 |
//! | `node.json`   | [`NodeMeta`]: node id, region, labels, server URL... | 0644 |
//!
//! `node.json` is written last at enrollment: its presence means "enrolled".

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use ringfence_proto::api::Labels;
use serde::{Deserialize, Serialize};

use super::error::ControlError;
use crate::files::{read_optional, write_atomic};

/// The node's identity as enrolled (`node.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeMeta {
    /// The node id (the certificate's common name).
    pub node_id: String,
    /// Its region.
    pub region: String,
    /// Its labels.
    pub labels: Labels,
    /// The control plane's base URL (`https://host:port`).
    pub server_url: String,
    /// Key id of the pinned bundle-signing key.
    pub key_id: String,
    /// The hostname sent at enrollment (subject of renewal CSRs).
    pub hostname: String,
    /// When the node enrolled (Unix ms).
    pub enrolled_ms: i64,
    /// When the current certificate was received (Unix ms, local clock): the renewal schedule
    /// counts the certificate's lifetime from here (certificates are backdated for clock skew).
    pub cert_received_ms: i64,
}

/// Everything the node needs to talk to the control plane.
#[derive(Clone, Debug)]
pub struct Identity {
    /// `<state-dir>/control`.
    pub dir: PathBuf,
    /// `node.json`.
    pub meta: NodeMeta,
    /// The private key (PEM).
    pub key_pem: String,
    /// The client certificate (PEM).
    pub cert_pem: String,
    /// Expiry of the client certificate (Unix ms, from the certificate).
    pub cert_not_after_ms: i64,
    /// The CA certificate (PEM).
    pub ca_pem: String,
    /// The pinned bundle-signing key.
    pub signing_key: VerifyingKey,
}

/// The control directory of an agent state directory.
pub fn control_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("control")
}

/// Expiry (Unix ms) of the first certificate in a PEM text.
pub fn cert_not_after_ms(cert_pem: &str) -> Result<i64, String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).map_err(|e| e.to_string())?;
    let cert = pem.parse_x509().map_err(|e| e.to_string())?;
    Ok(cert.validity().not_after.timestamp() * 1000)
}

impl Identity {
    /// Loads the identity from `<state_dir>/control/`.
    pub fn load(state_dir: &Path) -> Result<Identity, ControlError> {
        let dir = control_dir(state_dir);
        let Some(meta_text) = read_optional(&dir.join("node.json"))? else {
            return Err(ControlError::NotEnrolled { dir });
        };
        let corrupt = |file: &str, why: String| {
            ControlError::Config(format!(
                "{}: {why} (the enrollment state is damaged: restore it, or remove {} and enroll again)",
                dir.join(file).display(),
                dir.display()
            ))
        };
        let meta: NodeMeta =
            serde_json::from_str(&meta_text).map_err(|e| corrupt("node.json", e.to_string()))?;
        let read = |file: &str| -> Result<String, ControlError> {
            read_optional(&dir.join(file))?.ok_or_else(|| corrupt(file, "missing".into()))
        };
        let (key_pem, cert_pem, ca_pem, signing) =
            (read("node.key")?, read("node.crt")?, read("ca.pem")?, read("signing.pub")?);
        let signing_key =
            ringfence_proto::parse_public_key(&signing).map_err(|e| corrupt("signing.pub", e.to_string()))?;
        if ringfence_proto::key_id(&signing_key) != meta.key_id {
            return Err(corrupt("signing.pub", format!("its key id is not {} (node.json)", meta.key_id)));
        }
        let cert_not_after_ms = cert_not_after_ms(&cert_pem).map_err(|e| corrupt("node.crt", e))?;
        Ok(Identity { dir, meta, key_pem, cert_pem, cert_not_after_ms, ca_pem, signing_key })
    }

    /// Writes every file (node.json last); creates the directory 0700.
    pub fn save(&self) -> Result<(), ControlError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(ControlError::io("create", &self.dir))?;
        write_atomic(&self.dir.join("node.key"), self.key_pem.as_bytes(), 0o600)?;
        write_atomic(&self.dir.join("node.crt"), self.cert_pem.as_bytes(), 0o644)?;
        write_atomic(&self.dir.join("ca.pem"), self.ca_pem.as_bytes(), 0o644)?;
        let signing = format!("{}\n", ringfence_proto::public_key_b64(&self.signing_key));
        write_atomic(&self.dir.join("signing.pub"), signing.as_bytes(), 0o644)?;
        self.save_meta()
    }

    /// Replaces the certificate (after renewal): `node.crt`, then `node.json`.
    pub fn replace_certificate(&mut self, cert_pem: String) -> Result<(), ControlError> {
        self.cert_not_after_ms = cert_not_after_ms(&cert_pem)
            .map_err(|e| ControlError::Config(format!("the renewed certificate does not parse: {e}")))?;
        self.cert_pem = cert_pem;
        self.meta.cert_received_ms = ringfence_proto::now_ms();
        write_atomic(&self.dir.join("node.crt"), self.cert_pem.as_bytes(), 0o644)?;
        self.save_meta()
    }

    fn save_meta(&self) -> Result<(), ControlError> {
        let json = serde_json::to_string_pretty(&self.meta).expect("node metadata serializes") + "\n";
        Ok(write_atomic(&self.dir.join("node.json"), json.as_bytes(), 0o644)?)
    }

    /// The node id.
    pub fn node_id(&self) -> &str {
        &self.meta.node_id
    }

    /// When to renew (Unix ms): once less than a third of the certificate's lifetime is left.
    pub fn renew_at_ms(&self) -> i64 {
        let lifetime = (self.cert_not_after_ms - self.meta.cert_received_ms).max(0);
        self.cert_not_after_ms - lifetime / 3
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(dir: &Path) -> Identity {
        let key = ringfence_proto::csr::generate("host-a").unwrap();
        let cert_pem = self_signed(&key.key_pem);
        let signing = ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key();
        Identity {
            dir: control_dir(dir),
            meta: NodeMeta {
                node_id: "n-1".into(),
                region: "eu".into(),
                labels: Labels::new(),
                server_url: "https://127.0.0.1:8443".into(),
                key_id: ringfence_proto::key_id(&signing),
                hostname: "host-a".into(),
                enrolled_ms: 1,
                cert_received_ms: 1_000,
            },
            key_pem: key.key_pem,
            cert_not_after_ms: cert_not_after_ms(&cert_pem).unwrap(),
            cert_pem,
            ca_pem: "-----BEGIN CERTIFICATE-----\n".into(),
            signing_key: signing,
        }
    }

    fn self_signed(key_pem: &str) -> String {
        let key = rcgen::KeyPair::from_pem(key_pem).unwrap();
        rcgen::CertificateParams::new(vec!["host-a".to_owned()]).unwrap().self_signed(&key).unwrap().pem()
    }

    #[test]
    fn save_load_round_trip_with_private_key_mode() {
        use std::os::unix::fs::PermissionsExt;
        let state = tempfile::tempdir().unwrap();
        let err = Identity::load(state.path()).unwrap_err();
        assert!(matches!(err, ControlError::NotEnrolled { .. }), "{err}");
        let id = identity(state.path());
        id.save().unwrap();
        let back = Identity::load(state.path()).unwrap();
        assert_eq!((back.meta.clone(), back.key_pem.clone()), (id.meta.clone(), id.key_pem.clone()));
        assert_eq!(back.signing_key, id.signing_key);
        assert_eq!(back.cert_not_after_ms, id.cert_not_after_ms);
        // Renewal is due once two thirds of the lifetime (from receipt) have passed.
        let life = id.cert_not_after_ms - 1_000;
        assert_eq!(id.renew_at_ms(), id.cert_not_after_ms - life / 3);
        let mode = |f: &str| fs::metadata(id.dir.join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            (mode("node.key"), fs::metadata(&id.dir).unwrap().permissions().mode() & 0o777),
            (0o600, 0o700)
        );
        // A signing key that does not match node.json is refused.
        let other = ed25519_dalek::SigningKey::from_bytes(&[8; 32]).verifying_key();
        fs::write(id.dir.join("signing.pub"), ringfence_proto::public_key_b64(&other)).unwrap();
        let err = Identity::load(state.path()).unwrap_err().to_string();
        assert!(err.contains("signing.pub") && err.contains("enroll again"), "{err}");
    }
}
