//! Noticing that the policy file changed (content, not timestamps: editors and config managers
//! replace files in many ways, and a rename-over or in-place write both change the content).
use std::{
    collections::hash_map::DefaultHasher,
    hash::{Hash, Hasher},
    path::{Path, PathBuf},
};

/// How a change is recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detect {
    /// By content: for small files edited in any way (policies).
    Content,
    /// By inode, size and modification time: for large files replaced whole (geo databases,
    /// which geoipupdate renames into place); hashing 60 MB every second would be wasteful.
    Metadata,
}

#[derive(Debug)]
pub struct FileWatch {
    path: PathBuf,
    detect: Detect,
    last: Option<u64>,
}

fn digest(path: &Path, detect: Detect) -> Option<u64> {
    let mut h = DefaultHasher::new();
    match detect {
        Detect::Content => std::fs::read(path).ok()?.hash(&mut h),
        Detect::Metadata => {
            use std::os::unix::fs::MetadataExt;
            let m = std::fs::metadata(path).ok()?;
            (m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()).hash(&mut h);
        }
    }
    Some(h.finish())
}

impl FileWatch {
    /// Starts watching a policy file by content; the current content counts as seen.
    pub fn new(path: &Path) -> Self {
        Self::with(path, Detect::Content)
    }

    /// Starts watching with the given detection.
    pub fn with(path: &Path, detect: Detect) -> Self {
        Self { path: path.to_path_buf(), detect, last: digest(path, detect) }
    }

    /// True once per content change. An unreadable file is not a change (it may be mid-replace).
    pub fn changed(&mut self) -> bool {
        match digest(&self.path, self.detect) {
            Some(d) if Some(d) != self.last => {
                self.last = Some(d);
                true
            }
            _ => false,
        }
    }

    /// Records the current content as seen (after a reload triggered some other way).
    pub fn mark_seen(&mut self) {
        self.last = digest(&self.path, self.detect);
    }
}

#[cfg(test)]
mod tests {
    use super::FileWatch;

    #[test]
    fn reports_each_content_change_once() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.yaml");
        std::fs::write(&f, "a").unwrap();
        let mut w = FileWatch::new(&f);
        assert!(!w.changed(), "initial content counts as seen");
        std::fs::write(&f, "b").unwrap();
        assert!(w.changed());
        assert!(!w.changed(), "reported once");
        std::fs::write(&f, "b").unwrap();
        assert!(!w.changed(), "rewriting the same content is no change");
        std::fs::remove_file(&f).unwrap();
        assert!(!w.changed(), "a missing file (mid-replace) is no change");
        std::fs::write(&f, "c").unwrap();
        w.mark_seen();
        assert!(!w.changed(), "mark_seen records the content");
    }
}
