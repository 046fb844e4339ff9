//! The state directory: CA key and certificate, bundle-signing key, admin credential. Created on
//! first start (secrets mode 0600, the directory 0700), read on later starts.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::SigningKey;

use crate::pki::{Ca, PkiError};

/// File names inside the state directory.
pub const CA_CERT: &str = "ca.pem";
/// The CA private key.
pub const CA_KEY: &str = "ca.key";
/// The Ed25519 bundle-signing key (base64 of the 32-byte seed).
pub const SIGNING_KEY: &str = "bundle-signing.key";
/// The admin bearer credential.
pub const ADMIN_TOKEN: &str = "admin.token";
/// The Ed25519 key that signs audit checkpoints (base64 seed), used for nothing else.
pub const CHECKPOINT_KEY: &str = "audit-checkpoint.key";
/// Its public key (base64), for `ringfence audit verify --checkpoint-key`.
pub const CHECKPOINT_PUB: &str = "audit-checkpoint.pub";
/// The Ed25519 key that signs evidence packs' manifests (base64 seed), used for nothing else.
pub const EVIDENCE_KEY: &str = "evidence-signing.key";
/// Its public key (base64), for `ringfence evidence verify --key`.
pub const EVIDENCE_PUB: &str = "evidence-signing.pub";

/// Why the state directory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// A stored file is not what it should be.
    #[error("{}: {message} (restore it from backup, or move the state directory away to start afresh)", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Generating the CA failed.
    #[error(transparent)]
    Pki(#[from] PkiError),
}

/// What the control plane keeps in its state directory.
pub struct State {
    /// The CA.
    pub ca: Ca,
    /// The bundle-signing key.
    pub signing_key: SigningKey,
    /// The admin credential.
    pub admin_token: String,
    /// Where the admin credential is.
    pub admin_token_path: PathBuf,
    /// Where the CA certificate is.
    pub ca_path: PathBuf,
    /// The audit checkpoint key.
    pub checkpoint_key: SigningKey,
    /// The evidence pack signing key.
    pub evidence_key: SigningKey,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io { path: path.to_path_buf(), source }
}

/// Writes a new file with `mode`, refusing to overwrite.
fn write_new(path: &Path, contents: &str, mode: u32) -> Result<(), StateError> {
    let mut file =
        fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(path).map_err(io(path))?;
    file.write_all(contents.as_bytes()).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

fn read(path: &Path) -> Result<Option<String>, StateError> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path)(e)),
    }
}

fn corrupt(path: &Path, message: impl Into<String>) -> StateError {
    StateError::Corrupt { path: path.to_path_buf(), message: message.into() }
}

/// Loads the state, creating what is missing.
pub fn load_or_create(dir: &Path) -> Result<State, StateError> {
    fs::create_dir_all(dir).map_err(io(dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
    let (ca_path, key_path) = (dir.join(CA_CERT), dir.join(CA_KEY));
    let ca = match (read(&ca_path)?, read(&key_path)?) {
        (Some(cert), Some(key)) => Ca::load(&cert, &key).map_err(|e| corrupt(&ca_path, e.to_string()))?,
        (None, None) => {
            let ca = Ca::generate()?;
            write_new(&key_path, &ca.key_pem(), 0o600)?;
            write_new(&ca_path, &ca.pem, 0o644)?;
            tracing::info!(path = %ca_path.display(), "created the control plane CA");
            ca
        }
        (Some(_), None) => {
            return Err(corrupt(&key_path, "the CA certificate exists but its key is missing"))
        }
        (None, Some(_)) => return Err(corrupt(&ca_path, "the CA key exists but its certificate is missing")),
    };
    let signing_key = ed25519_key(&dir.join(SIGNING_KEY), "bundle-signing")?;
    let checkpoint_key = ed25519_key(&dir.join(CHECKPOINT_KEY), "audit checkpoint")?;
    let evidence_key = ed25519_key(&dir.join(EVIDENCE_KEY), "evidence signing")?;
    for (key, name) in [(&checkpoint_key, CHECKPOINT_PUB), (&evidence_key, EVIDENCE_PUB)] {
        let pub_path = dir.join(name);
        if read(&pub_path)?.is_none() {
            let public = ringfence_proto::public_key_b64(&key.verifying_key());
            write_new(&pub_path, &format!("{public}\n"), 0o644)?;
        }
    }
    let admin_token_path = dir.join(ADMIN_TOKEN);
    let admin_token = match read(&admin_token_path)? {
        Some(text) if text.trim().len() >= 32 => text.trim().to_owned(),
        Some(_) => {
            return Err(corrupt(&admin_token_path, "the admin credential is shorter than 32 characters"))
        }
        None => {
            let token = hex::encode(rand::random::<[u8; 32]>());
            write_new(&admin_token_path, &format!("{token}\n"), 0o600)?;
            tracing::info!(path = %admin_token_path.display(), "created the admin credential (mode 0600)");
            token
        }
    };
    Ok(State { ca, signing_key, admin_token, admin_token_path, ca_path, checkpoint_key, evidence_key })
}

/// Loads an Ed25519 key (base64 of its 32-byte seed), creating it (0600) if missing.
fn ed25519_key(path: &Path, what: &str) -> Result<SigningKey, StateError> {
    match read(path)? {
        Some(text) => {
            let seed = STANDARD.decode(text.trim()).map_err(|e| corrupt(path, e.to_string()))?;
            let seed: [u8; 32] = seed.try_into().map_err(|_| corrupt(path, "expected 32 bytes"))?;
            Ok(SigningKey::from_bytes(&seed))
        }
        None => {
            let key = SigningKey::generate(&mut rand::rngs::OsRng);
            write_new(path, &format!("{}\n", STANDARD.encode(key.to_bytes())), 0o600)?;
            tracing::info!(path = %path.display(), "created the {what} key");
            Ok(key)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_once_then_reloads_with_private_modes() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path()).unwrap();
        for name in [CA_KEY, SIGNING_KEY, ADMIN_TOKEN, CHECKPOINT_KEY, EVIDENCE_KEY] {
            let mode = fs::metadata(dir.path().join(name)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{name}");
        }
        let second = load_or_create(dir.path()).unwrap();
        assert_eq!(first.admin_token, second.admin_token);
        assert_eq!(first.ca.pem, second.ca.pem);
        assert_eq!(first.signing_key.to_bytes(), second.signing_key.to_bytes());
        assert_eq!(first.checkpoint_key.to_bytes(), second.checkpoint_key.to_bytes());
        assert_ne!(first.checkpoint_key.to_bytes(), first.signing_key.to_bytes(), "a dedicated key");
        assert_eq!(first.evidence_key.to_bytes(), second.evidence_key.to_bytes());
        assert_ne!(first.evidence_key.to_bytes(), first.checkpoint_key.to_bytes(), "a dedicated key");
        fs::remove_file(dir.path().join(CA_KEY)).unwrap();
        let err = load_or_create(dir.path()).err().expect("missing CA key refused");
        assert!(err.to_string().contains("its key is missing"), "{err}");
    }
}
