//! The node's WireGuard private key: generated on first start, stored base64 (as `wg genkey`
//! writes it) with mode 0600 in the state directory, and never logged.
use std::{
    fs,
    os::unix::fs::{DirBuilderExt, PermissionsExt},
    path::{Path, PathBuf},
};

use wireguard_control::Key;

use crate::files::write_atomic;

/// File name of the private key inside the state directory.
pub const KEY_FILE: &str = "wireguard.key";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: mode {mode:04o} lets others read the private key; expected 0600 (chmod 600 {path})")]
    Mode { path: PathBuf, mode: u32 },
    #[error("{path}: not a WireGuard private key (expected 32 bytes, base64, as `wg genkey` writes)")]
    Invalid { path: PathBuf },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io { path: path.to_path_buf(), source }
}

pub fn key_path(state_dir: &Path) -> PathBuf {
    state_dir.join(KEY_FILE)
}

/// Reads an existing key file; `Ok(None)` when there is none. Rejects group/other permissions.
pub fn read(state_dir: &Path) -> Result<Option<Key>, KeyError> {
    let path = key_path(state_dir);
    let meta = match fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&path)(e)),
    };
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Mode { path, mode });
    }
    let text = fs::read_to_string(&path).map_err(io(&path))?;
    Key::from_base64(text.trim()).map(Some).map_err(|_| KeyError::Invalid { path })
}

/// Returns the stored private key, generating and storing one first if there is none.
/// The file is written to a temporary name with mode 0600 and renamed into place.
pub fn load_or_create(state_dir: &Path) -> Result<(Key, bool), KeyError> {
    if let Some(key) = read(state_dir)? {
        return Ok((key, false));
    }
    fs::DirBuilder::new().recursive(true).mode(0o700).create(state_dir).map_err(io(state_dir))?;
    let path = key_path(state_dir);
    let key = Key::generate_private();
    let text = format!("{}\n", key.to_base64());
    write_atomic(&path, text.as_bytes(), 0o600)
        .map_err(|e| KeyError::Io { path: e.path, source: e.source })?;
    Ok((key, true))
}

/// Preflight: the key is readable and private, or the state directory can hold a new one.
pub fn check(state_dir: &Path) -> Result<(), String> {
    match read(state_dir) {
        Ok(Some(_)) => Ok(()),
        Err(e) => Err(format!("--state-dir: {e}")),
        Ok(None) => {
            let existing = state_dir.ancestors().find(|p| p.exists()).unwrap_or(Path::new("/"));
            if existing.is_dir() {
                Ok(())
            } else {
                Err(format!("--state-dir {}: {} is not a directory", state_dir.display(), existing.display()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_with_mode_0600_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        assert!(check(&state).is_ok());
        let (k1, created) = load_or_create(&state).unwrap();
        assert!(created);
        let mode = fs::metadata(key_path(&state)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (k2, created) = load_or_create(&state).unwrap();
        assert!(!created);
        assert_eq!(k1, k2);
        assert_eq!(k1.get_public(), k2.get_public());
    }

    #[test]
    fn readable_by_others_or_garbage_is_rejected() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        load_or_create(&dir).unwrap();
        let path = key_path(&dir);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(read(&dir), Err(KeyError::Mode { mode: 0o644, .. })));
        assert!(check(&dir).unwrap_err().contains("chmod 600"));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&path, "not a key\n").unwrap();
        assert!(matches!(read(&dir), Err(KeyError::Invalid { .. })));
    }
}
