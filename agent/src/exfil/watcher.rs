//! Polls the policy's checkpoint directories and feeds new or changed checkpoint files into the
//! [`CheckpointIndex`]. Polling (rather than inotify) also catches files written through other
//! mount namespaces and needs no watch-descriptor limits; a scan costs one `stat` per entry.
use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
    time::{Instant, SystemTime},
};

use ringfence_policy::Checkpoints;
use tracing::{info, warn};

use super::checkpoints::CheckpointIndex;

/// How deep below a watched path files are looked for.
const MAX_DEPTH: usize = 6;
/// Entries looked at per scan at most (a misconfigured path such as `/` stays cheap).
const MAX_ENTRIES: usize = 100_000;

/// The watched checkpoint files and what was last seen of each.
#[derive(Debug)]
pub struct CheckpointWatcher {
    rules: Checkpoints,
    seen: HashMap<PathBuf, (u64, Option<SystemTime>)>,
    missing_reported: Vec<PathBuf>,
}

impl CheckpointWatcher {
    pub fn new(rules: Checkpoints) -> Self {
        Self { rules, seen: HashMap::new(), missing_reported: Vec::new() }
    }

    pub fn rules(&self) -> &Checkpoints {
        &self.rules
    }

    /// Looks at every watched directory once; records new and changed checkpoint files in
    /// `index`. Returns how many were recorded.
    pub fn scan(&mut self, now: Instant, index: &mut CheckpointIndex) -> usize {
        let mut found = Vec::new();
        let mut budget = MAX_ENTRIES;
        for root in self.rules.paths.clone() {
            let root = PathBuf::from(root);
            match fs::metadata(&root) {
                Ok(_) => {
                    self.missing_reported.retain(|p| p != &root);
                    self.walk(&root, 0, &mut budget, &mut found);
                }
                Err(e) if !self.missing_reported.contains(&root) => {
                    warn!(path = %root.display(), error = %e, "checkpoint path cannot be read; watching for it");
                    self.missing_reported.push(root);
                }
                Err(_) => {}
            }
        }
        let mut recorded = 0;
        let mut present = HashMap::with_capacity(found.len());
        for (path, size, mtime) in found {
            if self.seen.get(&path) != Some(&(size, mtime)) {
                info!(path = %path.display(), bytes = size, "checkpoint file observed");
                index.observe(now, &path, size);
                recorded += 1;
            }
            present.insert(path, (size, mtime));
        }
        self.seen = present;
        recorded
    }

    fn walk(
        &self,
        dir: &Path,
        depth: usize,
        budget: &mut usize,
        found: &mut Vec<(PathBuf, u64, Option<SystemTime>)>,
    ) {
        let Ok(entries) = fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            if *budget == 0 {
                return;
            }
            *budget -= 1;
            // symlink_metadata: links are not followed (no loops, no escaping the watched tree).
            let Ok(meta) = entry.path().symlink_metadata() else { continue };
            if meta.is_dir() && depth < MAX_DEPTH {
                self.walk(&entry.path(), depth + 1, budget, found);
            } else if meta.is_file()
                && entry.file_name().to_str().is_some_and(|name| self.rules.matches_name(name))
            {
                found.push((entry.path(), meta.len(), meta.modified().ok()));
            }
        }
    }
}
