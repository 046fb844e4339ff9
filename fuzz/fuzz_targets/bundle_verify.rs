//! Arbitrary JSON → `SignedBundle` → `verify`: never panics. The envelope is checked as it
//! came (against a fixed pinned key), and once more re-signed with that key, so the inner
//! `bundle_json` reaches the bundle parser and the format, rollback and node checks.
#![no_main]

use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use libfuzzer_sys::fuzz_target;
use ringfence_proto::{key_id, SignedBundle};

fn key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::from_bytes(&[7u8; 32]))
}

fuzz_target!(|data: &[u8]| {
    let Ok(signed) = serde_json::from_slice::<SignedBundle>(data) else { return };
    let pinned = key().verifying_key();
    for last in [0, u64::MAX] {
        let _ = signed.verify(&pinned, last);
        let _ = signed.verify_for_node(&pinned, last, "n-1");
    }
    let resigned = SignedBundle {
        key_id: key_id(&pinned),
        signature: Some(STANDARD.encode(key().sign(signed.bundle_json.as_bytes()).to_bytes())),
        bundle_json: signed.bundle_json.clone(),
    };
    match resigned.verify(&pinned, 0) {
        Ok(bundle) => {
            // What verifies round-trips through the signer.
            let again = SignedBundle::sign(&bundle, key());
            assert_eq!(again.verify_for_node(&pinned, bundle.version, &bundle.node_id), Ok(bundle));
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
