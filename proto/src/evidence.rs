//! The auditor's evidence pack: what `GET /v1/evidence` returns (the files, the manifest and its
//! signature), the manifest's format, the controls each file evidences, and the signature check
//! that `ringfence evidence verify` runs offline.
//!
//! The manifest lists every file of the pack with its SHA-256 and size; it is signed (Ed25519) by
//! the control plane's evidence key (`evidence-signing.key`, used for nothing else). A pack
//! verifies when the signature holds for the pinned (or included) key, every listed file is
//! present with its hash, and no file is present that the manifest does not list.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::keys::key_id;

/// The manifest's `format`.
pub const EVIDENCE_FORMAT: &str = "ringfence.dev/evidence-pack/v1";
/// The manifest's path in the pack.
pub const MANIFEST: &str = "manifest.json";
/// The signature's path in the pack (base64 Ed25519 signature of the manifest's bytes).
pub const SIGNATURE: &str = "manifest.sig";
/// The evidence public key's path in the pack (base64).
pub const EVIDENCE_KEY: &str = "keys/evidence-signing.pub";
/// The audit checkpoint public key's path in the pack (base64).
pub const CHECKPOINT_KEY: &str = "keys/audit-checkpoint.pub";
/// The CA that issues node certificates (PEM): checks the nodes' signatures on self-test results.
pub const NODE_CA: &str = "keys/node-ca.pem";
/// The self-test results of the period, each signed by its node.
pub const SELFTEST_RESULTS: &str = "selftest/results.json";
/// The audit chain segment (JSON lines, seq order).
pub const AUDIT_RECORDS: &str = "audit/records.jsonl";
/// The external checkpoints of the segment (JSON lines).
pub const AUDIT_CHECKPOINTS: &str = "audit/checkpoints.jsonl";

/// (id, framework, title) of every control the pack maps evidence to.
pub const CONTROLS: &[(&str, &str, &str)] = &[
    ("SC-7", "NIST SP 800-53 Rev. 5", "Boundary Protection"),
    ("SC-7(10)", "NIST SP 800-53 Rev. 5", "Boundary Protection | Prevent Exfiltration"),
    ("SC-8", "NIST SP 800-53 Rev. 5", "Transmission Confidentiality and Integrity"),
    ("AC-17", "NIST SP 800-53 Rev. 5", "Remote Access"),
    ("AU-9", "NIST SP 800-53 Rev. 5", "Protection of Audit Information"),
    ("CC6.6", "SOC 2 (2017 TSC)", "Logical access security measures against threats from outside system boundaries"),
    ("CC6.7", "SOC 2 (2017 TSC)", "Restricts the transmission, movement and removal of information"),
    ("CC7.2", "SOC 2 (2017 TSC)", "Monitors system components for anomalies indicative of malicious acts"),
    (
        "EU-AI-Act-55(1)(d)",
        "EU AI Act (Regulation (EU) 2024/1689)",
        "Art. 55(1)(d): adequate cybersecurity protection for the GPAI model with systemic risk and its physical infrastructure",
    ),
];

/// One file of the pack.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    /// Its path in the pack.
    pub path: String,
    /// SHA-256 of its bytes (hex).
    pub sha256: String,
    /// Its size.
    pub bytes: u64,
    /// What it shows.
    pub description: String,
    /// The control ids (of [`CONTROLS`]) it evidences.
    pub controls: Vec<String>,
}

/// One control and the files that evidence it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlEntry {
    /// The framework.
    pub framework: String,
    /// The control's title.
    pub title: String,
    /// The pack's files that evidence it.
    pub evidence: Vec<String>,
}

/// `manifest.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`EVIDENCE_FORMAT`].
    pub format: String,
    /// When the pack was made (Unix ms).
    pub generated_ms: i64,
    /// The period it covers: from (Unix ms, inclusive).
    pub from_ms: i64,
    /// To (Unix ms, exclusive).
    pub to_ms: i64,
    /// [`key_id`] of the evidence key that signs it.
    pub key_id: String,
    /// [`key_id`] of the audit checkpoint key.
    pub checkpoint_key_id: String,
    /// Every file but the manifest and its signature.
    pub files: Vec<ManifestFile>,
    /// Control id → what evidences it.
    pub controls: BTreeMap<String, ControlEntry>,
    /// What the pack does not show, and why.
    pub notes: Vec<String>,
}

/// What `GET /v1/evidence` returns: the pack's files (text), manifest and signature included.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidencePack {
    /// Path → content, every file of the pack.
    pub files: BTreeMap<String, String>,
}

/// Why a pack does not verify.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EvidenceError {
    /// A required file is missing.
    #[error("{0}: missing from the pack")]
    Missing(String),
    /// The manifest does not parse.
    #[error("{MANIFEST}: not an evidence manifest: {0}")]
    Malformed(String),
    /// Signed by another key than the pinned one.
    #[error("{MANIFEST}: signed by key {got}, not by the pinned evidence key {expected}")]
    WrongKey {
        /// The pinned key's id.
        expected: String,
        /// What the manifest names.
        got: String,
    },
    /// The signature does not verify.
    #[error("{SIGNATURE}: the signature of {MANIFEST} does not verify (manifest or signature altered)")]
    BadSignature,
    /// A file's hash or size differs from the manifest's.
    #[error("{0}: altered (its SHA-256 differs from the signed manifest)")]
    Altered(String),
    /// A listed file is absent.
    #[error("{0}: removed (listed in the signed manifest, absent from the pack)")]
    Removed(String),
    /// A file the manifest does not list.
    #[error("{0}: added (not listed in the signed manifest)")]
    Added(String),
}

/// SHA-256 of `bytes`, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Manifest {
    /// Lists `files` (path → content, without manifest and signature) with their hashes and the
    /// controls `mapping` gives each path (`(path, description, controls)`).
    pub fn describe(
        files: &BTreeMap<String, String>,
        mapping: impl Fn(&str) -> (String, Vec<String>),
    ) -> (Vec<ManifestFile>, BTreeMap<String, ControlEntry>) {
        let mut controls: BTreeMap<String, ControlEntry> = CONTROLS
            .iter()
            .map(|(id, framework, title)| {
                let entry = ControlEntry {
                    framework: (*framework).into(),
                    title: (*title).into(),
                    evidence: Vec::new(),
                };
                ((*id).to_owned(), entry)
            })
            .collect();
        let mut listed = Vec::new();
        for (path, content) in files {
            let (description, ids) = mapping(path);
            for id in &ids {
                if let Some(c) = controls.get_mut(id) {
                    c.evidence.push(path.clone());
                }
            }
            listed.push(ManifestFile {
                path: path.clone(),
                sha256: sha256_hex(content.as_bytes()),
                bytes: content.len() as u64,
                description,
                controls: ids,
            });
        }
        (listed, controls)
    }

    /// The manifest's bytes and their signature (base64) by `key`.
    pub fn sign(&self, key: &SigningKey) -> (String, String) {
        let text = serde_json::to_string_pretty(self).expect("manifest serializes") + "\n";
        let signature = STANDARD.encode(key.sign(text.as_bytes()).to_bytes());
        (text, signature)
    }

    /// Checks the signature of `manifest` (bytes as in the pack) against `key` and parses it.
    pub fn verify(manifest: &[u8], signature: &str, key: &VerifyingKey) -> Result<Manifest, EvidenceError> {
        let m: Manifest =
            serde_json::from_slice(manifest).map_err(|e| EvidenceError::Malformed(e.to_string()))?;
        if m.format != EVIDENCE_FORMAT {
            return Err(EvidenceError::Malformed(format!("format {:?}", m.format)));
        }
        let expected = key_id(key);
        if m.key_id != expected {
            return Err(EvidenceError::WrongKey { expected, got: m.key_id });
        }
        let bytes = STANDARD.decode(signature.trim()).map_err(|_| EvidenceError::BadSignature)?;
        let sig = Signature::from_slice(&bytes).map_err(|_| EvidenceError::BadSignature)?;
        key.verify(manifest, &sig).map_err(|_| EvidenceError::BadSignature)?;
        Ok(m)
    }

    /// Checks the pack's files (path → bytes, manifest and signature excluded) against the
    /// manifest: each listed file present with its hash, nothing else present.
    pub fn check_files(&self, files: &BTreeMap<String, Vec<u8>>) -> Result<(), EvidenceError> {
        for f in &self.files {
            let bytes = files.get(&f.path).ok_or_else(|| EvidenceError::Removed(f.path.clone()))?;
            if bytes.len() as u64 != f.bytes || sha256_hex(bytes) != f.sha256 {
                return Err(EvidenceError::Altered(f.path.clone()));
            }
        }
        if let Some(extra) = files.keys().find(|p| !self.files.iter().any(|f| &f.path == *p)) {
            return Err(EvidenceError::Added(extra.clone()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(key: &SigningKey) -> (String, String, BTreeMap<String, Vec<u8>>) {
        let files: BTreeMap<String, String> =
            [("a.json".to_string(), "{}".to_string()), ("b/c.txt".into(), "x".into())].into();
        let (listed, controls) = Manifest::describe(&files, |p| (format!("file {p}"), vec!["SC-7".into()]));
        let m = Manifest {
            format: EVIDENCE_FORMAT.into(),
            generated_ms: 1,
            from_ms: 0,
            to_ms: 2,
            key_id: key_id(&key.verifying_key()),
            checkpoint_key_id: "x".into(),
            files: listed,
            controls,
            notes: vec![],
        };
        assert_eq!(m.controls["SC-7"].evidence, ["a.json", "b/c.txt"]);
        assert!(m.controls["AU-9"].evidence.is_empty());
        let (text, sig) = m.sign(key);
        (text, sig, files.into_iter().map(|(k, v)| (k, v.into_bytes())).collect())
    }

    #[test]
    fn signed_manifest_and_files_verify_and_every_change_is_named() {
        let key = SigningKey::from_bytes(&[3; 32]);
        let (text, sig, mut files) = pack(&key);
        let m = Manifest::verify(text.as_bytes(), &sig, &key.verifying_key()).unwrap();
        assert_eq!(m.check_files(&files), Ok(()));
        let edited = text.replace("\"generated_ms\": 1", "\"generated_ms\": 5");
        assert_eq!(
            Manifest::verify(edited.as_bytes(), &sig, &key.verifying_key()),
            Err(EvidenceError::BadSignature)
        );
        let other = SigningKey::from_bytes(&[4; 32]);
        assert!(matches!(
            Manifest::verify(text.as_bytes(), &sig, &other.verifying_key()),
            Err(EvidenceError::WrongKey { .. })
        ));
        files.insert("b/c.txt".into(), b"y".to_vec());
        assert_eq!(m.check_files(&files), Err(EvidenceError::Altered("b/c.txt".into())));
        files.remove("b/c.txt");
        assert_eq!(m.check_files(&files), Err(EvidenceError::Removed("b/c.txt".into())));
        files.insert("b/c.txt".into(), b"x".to_vec());
        files.insert("extra".into(), b"".to_vec());
        assert_eq!(m.check_files(&files), Err(EvidenceError::Added("extra".into())));
    }
}
