//! Policy bundles: what the control plane renders for one node, signed with its Ed25519 key.
//!
//! The signature covers the exact bytes of `bundle_json`, carried as a string, so no
//! re-serialization can change what was signed. An agent pins the control plane's public key at
//! enrollment and calls [`SignedBundle::verify`] with it and the version it last applied: unsigned,
//! tampered, foreign-key and older (rollback) bundles are refused.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::keys::key_id;

/// The `format` of bundles this crate writes and accepts.
pub const BUNDLE_FORMAT: &str = "ringfence.dev/bundle/v1";

/// A WireGuard peer of the node: another enrolled node of the same region.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    /// The peer's node id.
    pub name: String,
    /// Its WireGuard public key (base64).
    pub public_key: String,
    /// Its WireGuard endpoint (`host:port`), if it reported one.
    pub endpoint: Option<String>,
    /// The addresses routed to it through the tunnel (CIDRs).
    pub allowed_ips: Vec<String>,
    /// Its region.
    pub region: String,
}

/// A workload policy of the node: the policy (with `spec.workloadSelector`) that governs the
/// workloads whose labels it selects.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadPolicyDoc {
    /// Its `metadata.name`.
    pub name: String,
    /// The version of the stored policy.
    pub version: u64,
    /// SHA-256 (hex) of `yaml`.
    pub sha256: String,
    /// The policy document (`EgressPolicy` YAML with `spec.workloadSelector`).
    pub yaml: String,
}

/// A workload running on another node, for ingress `from.workloads` selectors: its labels and
/// the addresses its traffic comes from (that node's tunnel addresses).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWorkloadDoc {
    /// The node it runs on.
    pub node_id: String,
    /// Its labels, as that node's agent reported them.
    pub labels: std::collections::BTreeMap<String, String>,
    /// The node's addresses (CIDRs).
    pub addresses: Vec<String>,
}

/// What one node must enforce, as rendered by the control plane.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    /// Always [`BUNDLE_FORMAT`].
    pub format: String,
    /// Monotonic per node: a bundle with a lower version than the one applied is a rollback.
    pub version: u64,
    /// The node this bundle was rendered for.
    pub node_id: String,
    /// The node's region.
    pub region: String,
    /// When it was rendered (Unix milliseconds).
    pub issued_at_ms: i64,
    /// The version of the stored policy it carries.
    pub policy_version: u64,
    /// SHA-256 (hex) of `policy_yaml`.
    pub policy_sha256: String,
    /// The policy document (`EgressPolicy` YAML).
    pub policy_yaml: String,
    /// The WireGuard peers of the node ("peers in my region" resolved).
    pub peers: Vec<Peer>,
    /// The workload policies for this node (absent in older bundles: none). Left out when
    /// empty, so agents that predate them still accept such bundles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workload_policies: Vec<WorkloadPolicyDoc>,
    /// The workloads of the other nodes of its region (absent in older bundles: none; left out
    /// when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remote_workloads: Vec<RemoteWorkloadDoc>,
}

/// A bundle and its signature, as served by `GET /v1/bundle`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedBundle {
    /// [`crate::key_id`] of the signing key.
    pub key_id: String,
    /// The bundle, serialized; the signature covers exactly these bytes.
    pub bundle_json: String,
    /// Ed25519 signature of `bundle_json` (standard base64). Absent: unsigned (always refused).
    #[serde(default)]
    pub signature: Option<String>,
}

/// Why a bundle was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BundleError {
    /// No signature.
    #[error("bundle is unsigned")]
    Unsigned,
    /// Signed by another key than the pinned one.
    #[error("bundle is signed by key {got}, not by the pinned control-plane key {expected}")]
    WrongKey {
        /// The pinned key's id.
        expected: String,
        /// The key id the bundle names.
        got: String,
    },
    /// The signature does not match the bytes (tampered bundle or forged signature).
    #[error("bundle signature does not verify (tampered or forged)")]
    BadSignature,
    /// Signed correctly but not a bundle this crate understands.
    #[error("bundle is malformed: {0}")]
    Malformed(String),
    /// Older than the bundle already applied.
    #[error("bundle version {version} is older than the applied version {last} (rollback refused)")]
    Rollback {
        /// The refused bundle's version.
        version: u64,
        /// The version already applied.
        last: u64,
    },
    /// Rendered for another node.
    #[error("bundle is for node {got}, this node is {expected}")]
    WrongNode {
        /// This node's id.
        expected: String,
        /// The node the bundle names.
        got: String,
    },
}

impl SignedBundle {
    /// Serializes and signs `bundle`.
    pub fn sign(bundle: &Bundle, key: &SigningKey) -> SignedBundle {
        let bundle_json = serde_json::to_string(bundle).expect("a bundle always serializes");
        let signature = key.sign(bundle_json.as_bytes());
        SignedBundle {
            key_id: key_id(&key.verifying_key()),
            bundle_json,
            signature: Some(STANDARD.encode(signature.to_bytes())),
        }
    }

    /// Checks the signature against the pinned key, parses the bundle and refuses one older
    /// than `last_applied_version` (0 when nothing was applied yet; an equal version is the
    /// same bundle again and accepted).
    pub fn verify(&self, pinned: &VerifyingKey, last_applied_version: u64) -> Result<Bundle, BundleError> {
        let signature = match self.signature.as_deref().map(str::trim) {
            None | Some("") => return Err(BundleError::Unsigned),
            Some(s) => s,
        };
        let expected = key_id(pinned);
        if self.key_id != expected {
            return Err(BundleError::WrongKey { expected, got: self.key_id.clone() });
        }
        let bytes = STANDARD.decode(signature).map_err(|_| BundleError::BadSignature)?;
        let signature = Signature::from_slice(&bytes).map_err(|_| BundleError::BadSignature)?;
        pinned.verify(self.bundle_json.as_bytes(), &signature).map_err(|_| BundleError::BadSignature)?;
        let bundle: Bundle =
            serde_json::from_str(&self.bundle_json).map_err(|e| BundleError::Malformed(e.to_string()))?;
        if bundle.format != BUNDLE_FORMAT {
            return Err(BundleError::Malformed(format!(
                "unsupported format {:?} (expected {BUNDLE_FORMAT:?})",
                bundle.format
            )));
        }
        if bundle.version < last_applied_version {
            return Err(BundleError::Rollback { version: bundle.version, last: last_applied_version });
        }
        Ok(bundle)
    }

    /// [`SignedBundle::verify`], and the bundle must be rendered for `node_id`.
    pub fn verify_for_node(
        &self,
        pinned: &VerifyingKey,
        last_applied_version: u64,
        node_id: &str,
    ) -> Result<Bundle, BundleError> {
        let bundle = self.verify(pinned, last_applied_version)?;
        if bundle.node_id != node_id {
            return Err(BundleError::WrongNode { expected: node_id.to_owned(), got: bundle.node_id });
        }
        Ok(bundle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(version: u64) -> Bundle {
        Bundle {
            format: BUNDLE_FORMAT.into(),
            version,
            node_id: "n-1".into(),
            region: "eu".into(),
            issued_at_ms: 1_700_000_000_000,
            policy_version: 3,
            policy_sha256: "00".repeat(32),
            policy_yaml: "apiVersion: ringfence.dev/v1\n".into(),
            peers: vec![Peer {
                name: "n-2".into(),
                public_key: "k".into(),
                endpoint: Some("192.0.2.2:51820".into()),
                allowed_ips: vec!["10.9.0.2/32".into()],
                region: "eu".into(),
            }],
            workload_policies: vec![],
            remote_workloads: vec![],
        }
    }

    fn key() -> SigningKey {
        SigningKey::generate(&mut rand::rngs::OsRng)
    }

    #[test]
    fn signed_bundle_verifies_with_the_pinned_key() {
        let key = key();
        let signed = SignedBundle::sign(&bundle(7), &key);
        assert_eq!(signed.verify(&key.verifying_key(), 0), Ok(bundle(7)));
        assert_eq!(signed.verify(&key.verifying_key(), 7), Ok(bundle(7)), "same version again is fine");
        assert_eq!(signed.verify_for_node(&key.verifying_key(), 6, "n-1"), Ok(bundle(7)));
        // Survives a JSON round trip of the envelope.
        let wire = serde_json::to_string(&signed).unwrap();
        let back: SignedBundle = serde_json::from_str(&wire).unwrap();
        assert_eq!(back.verify(&key.verifying_key(), 0).unwrap().version, 7);
    }

    #[test]
    fn bundles_without_workloads_leave_the_fields_out() {
        let json = serde_json::to_string(&bundle(2)).unwrap();
        assert!(!json.contains("workload"), "{json}");
    }

    #[test]
    fn older_bundles_without_workload_fields_parse() {
        let mut json: serde_json::Value = serde_json::to_value(bundle(2)).unwrap();
        let map = json.as_object_mut().unwrap();
        map.remove("workload_policies");
        map.remove("remote_workloads");
        let back: Bundle = serde_json::from_value(json).unwrap();
        assert_eq!(back, bundle(2));
        let mut with = bundle(3);
        with.workload_policies.push(WorkloadPolicyDoc {
            name: "train".into(),
            version: 4,
            sha256: "ab".into(),
            yaml: "y".into(),
        });
        with.remote_workloads.push(RemoteWorkloadDoc {
            node_id: "n-2".into(),
            labels: [("job".to_string(), "a".to_string())].into(),
            addresses: vec!["10.9.0.2/32".into()],
        });
        let wire = serde_json::to_string(&with).unwrap();
        assert_eq!(serde_json::from_str::<Bundle>(&wire).unwrap(), with);
        let bad = wire.replacen("\"yaml\":\"y\"", "\"yaml\":\"y\",\"x\":1", 1);
        assert!(serde_json::from_str::<Bundle>(&bad).unwrap_err().to_string().contains("unknown field `x`"));
    }

    #[test]
    fn unsigned_refused() {
        let key = key();
        let mut signed = SignedBundle::sign(&bundle(1), &key);
        signed.signature = None;
        assert_eq!(signed.verify(&key.verifying_key(), 0), Err(BundleError::Unsigned));
        signed.signature = Some(String::new());
        assert_eq!(signed.verify(&key.verifying_key(), 0), Err(BundleError::Unsigned));
        let wire = r#"{"key_id":"x","bundle_json":"{}"}"#;
        let parsed: SignedBundle = serde_json::from_str(wire).unwrap();
        assert_eq!(parsed.verify(&key.verifying_key(), 0), Err(BundleError::Unsigned));
    }

    #[test]
    fn tampered_refused() {
        let key = key();
        let mut signed = SignedBundle::sign(&bundle(1), &key);
        signed.bundle_json = signed.bundle_json.replace("10.9.0.2/32", "0.0.0.0/0");
        assert_eq!(signed.verify(&key.verifying_key(), 0), Err(BundleError::BadSignature));
        let mut garbage = SignedBundle::sign(&bundle(1), &key);
        garbage.signature = Some("AAAA".into());
        assert_eq!(garbage.verify(&key.verifying_key(), 0), Err(BundleError::BadSignature));
    }

    #[test]
    fn other_key_refused() {
        let (ours, theirs) = (key(), key());
        let forged = SignedBundle::sign(&bundle(1), &theirs);
        assert!(matches!(forged.verify(&ours.verifying_key(), 0), Err(BundleError::WrongKey { .. })));
        // Claiming our key id does not help: the signature is checked against the pinned key.
        let mut relabelled = forged.clone();
        relabelled.key_id = key_id(&ours.verifying_key());
        assert_eq!(relabelled.verify(&ours.verifying_key(), 0), Err(BundleError::BadSignature));
    }

    #[test]
    fn rollback_refused() {
        let key = key();
        let signed = SignedBundle::sign(&bundle(4), &key);
        assert_eq!(
            signed.verify(&key.verifying_key(), 5),
            Err(BundleError::Rollback { version: 4, last: 5 })
        );
    }

    #[test]
    fn wrong_node_and_format_refused() {
        let key = key();
        let signed = SignedBundle::sign(&bundle(1), &key);
        assert!(matches!(
            signed.verify_for_node(&key.verifying_key(), 0, "n-9"),
            Err(BundleError::WrongNode { .. })
        ));
        let mut other = bundle(1);
        other.format = "ringfence.dev/bundle/v0".into();
        let signed = SignedBundle::sign(&other, &key);
        assert!(matches!(signed.verify(&key.verifying_key(), 0), Err(BundleError::Malformed(_))));
        // A signed document with an unknown field is refused too.
        let json = serde_json::to_string(&bundle(1)).unwrap().replacen('{', "{\"extra\":1,", 1);
        let sig = key.sign(json.as_bytes());
        let signed = SignedBundle {
            key_id: key_id(&key.verifying_key()),
            bundle_json: json,
            signature: Some(STANDARD.encode(sig.to_bytes())),
        };
        assert!(
            matches!(signed.verify(&key.verifying_key(), 0), Err(BundleError::Malformed(m)) if m.contains("extra"))
        );
    }
}
