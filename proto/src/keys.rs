//! Ed25519 public keys as they travel: standard base64 of the 32 raw bytes, and a short key id.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::VerifyingKey;
use sha2::{Digest, Sha256};

/// Why a public key string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// Not base64.
    #[error("public key is not base64: {0}")]
    Base64(String),
    /// Not 32 bytes, or not a valid Ed25519 point.
    #[error("public key is not an Ed25519 key (expected 32 bytes, base64)")]
    NotEd25519,
}

/// Standard base64 of the 32 raw key bytes.
pub fn public_key_b64(key: &VerifyingKey) -> String {
    STANDARD.encode(key.as_bytes())
}

/// Parses [`public_key_b64`]'s format.
pub fn parse_public_key(b64: &str) -> Result<VerifyingKey, KeyError> {
    let bytes = STANDARD.decode(b64.trim()).map_err(|e| KeyError::Base64(e.to_string()))?;
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| KeyError::NotEd25519)?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::NotEd25519)
}

/// The first 16 hex digits of SHA-256 of the raw key bytes: names a key in bundles and logs.
pub fn key_id(key: &VerifyingKey) -> String {
    hex::encode(&Sha256::digest(key.as_bytes())[..8])
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    #[test]
    fn round_trip_and_refusals() {
        let key = SigningKey::generate(&mut rand::rngs::OsRng).verifying_key();
        let text = public_key_b64(&key);
        assert_eq!(parse_public_key(&text), Ok(key));
        assert_eq!(key_id(&key).len(), 16);
        assert_eq!(parse_public_key("AAAA"), Err(KeyError::NotEd25519));
        assert!(matches!(parse_public_key("not base64!"), Err(KeyError::Base64(_))));
    }
}
