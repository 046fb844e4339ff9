//! Noticing that the policy file changed (content, not timestamps: editors and config managers
//! replace files in many ways, and a rename-over or in-place write both change the content).
use std::{
    collections::hash_map::DefaultHasher,
    hash::{Hash, Hasher},
    path::{Path, PathBuf},
};

pub struct FileWatch {
    path: PathBuf,
    last: Option<u64>,
}

fn digest(path: &Path) -> Option<u64> {
    let bytes = std::fs::read(path).ok()?;
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    Some(h.finish())
}

impl FileWatch {
    /// Starts watching; the current content counts as seen.
    pub fn new(path: &Path) -> Self {
        Self { path: path.to_path_buf(), last: digest(path) }
    }

    /// True once per content change. An unreadable file is not a change (it may be mid-replace).
    pub fn changed(&mut self) -> bool {
        match digest(&self.path) {
            Some(d) if Some(d) != self.last => {
                self.last = Some(d);
                true
            }
            _ => false,
        }
    }

    /// Records the current content as seen (after a reload triggered some other way).
    pub fn mark_seen(&mut self) {
        self.last = digest(&self.path);
    }
}
