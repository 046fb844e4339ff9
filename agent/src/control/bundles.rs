//! [`BundleStore`]: checks signed bundles before the agent applies them, and keeps the last good
//! one on disk so the node enforces it across restarts and control-plane outages.
//!
//! In the control directory: `last-bundle.json` (the [`SignedBundle`] as received, signature
//! included, re-verified at every start) and `applied-version` (the rollback floor: no bundle
//! older than it is accepted, even if `last-bundle.json` is lost). Both are written atomically.

use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use ringfence_proto::{Bundle, SignedBundle};

use super::error::ControlError;
use super::identity::Identity;
use crate::files::{read_optional, write_atomic};

/// The last good bundle, as received.
pub const LAST_BUNDLE: &str = "last-bundle.json";
/// The version of the last applied bundle.
pub const APPLIED_VERSION: &str = "applied-version";

/// Verification and persistence of bundles for one node.
#[derive(Debug)]
pub struct BundleStore {
    dir: PathBuf,
    node_id: String,
    pinned: VerifyingKey,
    applied_version: u64,
    last: Option<Bundle>,
}

/// Same bundle, whenever it was rendered.
fn same_content(a: &Bundle, b: &Bundle) -> bool {
    Bundle { issued_at_ms: 0, ..a.clone() } == Bundle { issued_at_ms: 0, ..b.clone() }
}

impl BundleStore {
    /// The store of an enrolled node (in its control directory).
    pub fn for_identity(identity: &Identity) -> Result<BundleStore, ControlError> {
        BundleStore::open(&identity.dir, identity.node_id(), identity.signing_key)
    }

    /// Opens the store in `dir` for `node_id`, verifying with `pinned`. Reads the rollback
    /// floor; call [`BundleStore::load_last`] for the stored bundle.
    pub fn open(dir: &Path, node_id: &str, pinned: VerifyingKey) -> Result<BundleStore, ControlError> {
        let path = dir.join(APPLIED_VERSION);
        let applied_version = match read_optional(&path)? {
            None => 0,
            Some(text) => text.trim().parse().map_err(|_| {
                ControlError::Config(format!(
                    "{}: {:?} is not a version number (restore it or remove it)",
                    path.display(),
                    text.trim()
                ))
            })?,
        };
        Ok(BundleStore { dir: dir.into(), node_id: node_id.into(), pinned, applied_version, last: None })
    }

    /// Re-verifies `last-bundle.json`: `Ok(None)` if there is none; an error (and the file
    /// ignored) if it does not verify: edited, from another node or key, or older than the floor.
    pub fn load_last(&mut self) -> Result<Option<Bundle>, ControlError> {
        self.last = None;
        let path = self.dir.join(LAST_BUNDLE);
        let Some(text) = read_optional(&path)? else { return Ok(None) };
        let refused = |reason: String| ControlError::StoredBundle { path: path.clone(), reason };
        let signed: SignedBundle = serde_json::from_str(&text).map_err(|e| refused(e.to_string()))?;
        let bundle = signed
            .verify_for_node(&self.pinned, self.applied_version, &self.node_id)
            .map_err(|e| refused(e.to_string()))?;
        check_peers(&bundle).map_err(|e| refused(e.to_string()))?;
        self.applied_version = bundle.version;
        self.last = Some(bundle.clone());
        Ok(Some(bundle))
    }

    /// The last good bundle (after [`BundleStore::load_last`] or [`BundleStore::commit`]).
    pub fn last(&self) -> Option<&Bundle> {
        self.last.as_ref()
    }

    /// The rollback floor: the newest version applied on this node.
    pub fn applied_version(&self) -> u64 {
        self.applied_version
    }

    /// `after` for the long-poll: the version of the bundle in force, 0 without one (then the
    /// control plane sends its current bundle, which must still be at least the floor).
    pub fn poll_after(&self) -> u64 {
        self.last.as_ref().map_or(0, |b| b.version)
    }

    /// Checks a bundle without keeping it: its peers must be a valid mesh (no repeated or
    /// malformed key, no overlapping addresses), then pinned key, this node, not older than the floor, and
    /// at the floor's version only the same contents.
    pub fn verify(&self, signed: &SignedBundle) -> Result<Bundle, ControlError> {
        let bundle = signed.verify_for_node(&self.pinned, self.applied_version, &self.node_id)?;
        check_peers(&bundle)?;
        if let Some(last) = &self.last {
            if bundle.version <= last.version && !same_content(last, &bundle) {
                return Err(ControlError::BundleConflict { version: bundle.version });
            }
        }
        Ok(bundle)
    }

    /// Records `signed` (verified into `bundle`) as applied: `last-bundle.json`, then the floor.
    pub fn commit(&mut self, signed: &SignedBundle, bundle: Bundle) -> Result<(), ControlError> {
        let json = serde_json::to_string_pretty(signed).expect("a signed bundle serializes") + "\n";
        write_atomic(&self.dir.join(LAST_BUNDLE), json.as_bytes(), 0o600)?;
        let version = format!("{}\n", bundle.version.max(self.applied_version));
        write_atomic(&self.dir.join(APPLIED_VERSION), version.as_bytes(), 0o600)?;
        self.applied_version = self.applied_version.max(bundle.version);
        self.last = Some(bundle);
        Ok(())
    }

    /// [`BundleStore::verify`] then [`BundleStore::commit`].
    pub fn accept(&mut self, signed: &SignedBundle) -> Result<Bundle, ControlError> {
        let bundle = self.verify(signed)?;
        self.commit(signed, bundle.clone())?;
        Ok(bundle)
    }
}

/// Refuses a bundle whose peers are not a valid mesh (the mesh would refuse to start with them).
fn check_peers(bundle: &Bundle) -> Result<(), ControlError> {
    crate::wg::peers::from_bundle(&bundle.peers)
        .map(|_| ())
        .map_err(|problems| ControlError::BadPeers { version: bundle.version, problems: problems.join("; ") })
}

/// A bundle's peers in the mesh's peers-file format (`{"peers": [...]}`, pretty JSON).
pub fn peers_document(b: &Bundle) -> Vec<u8> {
    let peers: Vec<_> = b
        .peers
        .iter()
        .map(|p| serde_json::json!({ "publicKey": p.public_key, "endpoint": p.endpoint, "allowedIps": p.allowed_ips, "region": p.region }))
        .collect();
    serde_json::to_vec_pretty(&serde_json::json!({ "peers": peers })).expect("peers serialize")
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::SigningKey;
    use ringfence_proto::{BundleError, BUNDLE_FORMAT};

    use super::*;

    fn bundle(version: u64, cidr: &str) -> Bundle {
        Bundle {
            format: BUNDLE_FORMAT.into(),
            version,
            node_id: "n-1".into(),
            region: "eu".into(),
            issued_at_ms: ringfence_proto::now_ms(),
            policy_version: 1,
            policy_sha256: "00".repeat(32),
            policy_yaml: format!("cidrs: [{cidr}]\n"),
            peers: vec![],
            workload_policies: vec![],
            remote_workloads: vec![],
        }
    }

    #[test]
    fn accepts_newer_refuses_rollback_conflict_and_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[3; 32]);
        let mut store = BundleStore::open(dir.path(), "n-1", key.verifying_key()).unwrap();
        assert_eq!(store.load_last().unwrap(), None);
        let v5 = SignedBundle::sign(&bundle(5, "10.0.0.0/8"), &key);
        assert_eq!(store.accept(&v5).unwrap().version, 5);
        let rollback = store.accept(&SignedBundle::sign(&bundle(4, "0.0.0.0/0"), &key)).unwrap_err();
        assert!(matches!(
            rollback,
            ControlError::BundleRefused(BundleError::Rollback { version: 4, last: 5 })
        ));
        // The same version rendered again is fine; other contents under that version are not.
        assert!(store.verify(&SignedBundle::sign(&bundle(5, "10.0.0.0/8"), &key)).is_ok());
        let other = store.verify(&SignedBundle::sign(&bundle(5, "0.0.0.0/0"), &key)).unwrap_err();
        assert!(matches!(other, ControlError::BundleConflict { version: 5 }), "{other}");
        let mut foreign = bundle(6, "10.0.0.0/8");
        foreign.node_id = "n-2".into();
        let err = store.verify(&SignedBundle::sign(&foreign, &key)).unwrap_err();
        assert!(matches!(err, ControlError::BundleRefused(BundleError::WrongNode { .. })), "{err}");
        // Reopened: the stored bundle re-verifies and sets the floor.
        let mut again = BundleStore::open(dir.path(), "n-1", key.verifying_key()).unwrap();
        assert_eq!(again.load_last().unwrap().map(|b| b.version), Some(5));
        assert_eq!((again.poll_after(), again.applied_version()), (5, 5));
        // Edited on disk: refused, ignored, the floor stays.
        let path = dir.path().join(LAST_BUNDLE);
        let text = std::fs::read_to_string(&path).unwrap().replace("10.0.0.0/8", "0.0.0.0/0");
        std::fs::write(&path, text).unwrap();
        let mut tampered = BundleStore::open(dir.path(), "n-1", key.verifying_key()).unwrap();
        let err = tampered.load_last().unwrap_err();
        assert!(err.to_string().contains("tampered or forged"), "{err}");
        assert_eq!((tampered.last(), tampered.poll_after(), tampered.applied_version()), (None, 0, 5));
        assert!(tampered.accept(&SignedBundle::sign(&bundle(4, "10.0.0.0/8"), &key)).is_err());
        assert!(tampered.accept(&v5).is_ok(), "the current bundle is accepted again");
    }

    #[test]
    fn peers_that_overlap_or_repeat_keys_are_refused_keeping_the_last_good() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[3; 32]);
        let mut store = BundleStore::open(dir.path(), "n-1", key.verifying_key()).unwrap();
        let peer = |k: u8, ip: &str| ringfence_proto::Peer {
            name: format!("n-{k}"),
            public_key: base64_key(k),
            endpoint: Some(format!("192.0.2.{k}:51820")),
            allowed_ips: vec![ip.into()],
            region: "eu".into(),
        };
        let mut good = bundle(5, "10.0.0.0/8");
        good.peers = vec![peer(2, "10.77.0.2/32"), peer(3, "10.77.0.3/32")];
        store.accept(&SignedBundle::sign(&good, &key)).unwrap();
        let mut hijacked = bundle(6, "10.0.0.0/8");
        hijacked.peers = vec![peer(2, "10.77.0.2/32"), peer(2, "0.0.0.0/1"), peer(4, "10.77.0.0/24")];
        let err = store.accept(&SignedBundle::sign(&hijacked, &key)).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, ControlError::BadPeers { version: 6, .. }), "{text}");
        for needle in
            ["same key as peers[0]", "10.77.0.0/24 overlaps 10.77.0.2/32", "keeping the last good bundle"]
        {
            assert!(text.contains(needle), "{needle:?} in {text}");
        }
        assert_eq!(store.last().map(|b| b.version), Some(5));
        assert_eq!(store.applied_version(), 5);
    }

    fn base64_key(n: u8) -> String {
        wireguard_control::Key([n; 32]).to_base64()
    }
}
