//! Recent checkpoint files and the sizes a transfer may be compared against: single files and
//! sharded checkpoints (`model-00001-of-00004.safetensors` …), whose shards sum to one size.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

/// A size worth matching: one file, or the total of a sharded checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The file, or the first shard of a sharded checkpoint.
    pub path: PathBuf,
    pub bytes: u64,
    pub shards: usize,
}

/// The shard group of a file name: `model-00001-of-00004.safetensors` -> `model-of-00004.safetensors`
/// (the same for every shard of that checkpoint); `None` for a name that is not a shard.
pub fn shard_group(name: &str) -> Option<String> {
    let (stem, rest) = name.split_once("-of-")?;
    let (prefix, index) = stem.rsplit_once('-')?;
    let total: String = rest.chars().take_while(char::is_ascii_digit).collect();
    if index.is_empty() || !index.chars().all(|c| c.is_ascii_digit()) || total.is_empty() {
        return None;
    }
    Some(format!("{prefix}-of-{rest}"))
}

/// Checkpoint files seen recently (kept for `retention`).
#[derive(Debug)]
pub struct CheckpointIndex {
    retention: Duration,
    files: BTreeMap<PathBuf, (u64, Instant)>,
}

impl CheckpointIndex {
    pub fn new(retention: Duration) -> Self {
        Self { retention, files: BTreeMap::new() }
    }

    /// Records a file (new or grown); forgets files older than the retention.
    pub fn observe(&mut self, now: Instant, path: &Path, bytes: u64) {
        self.files.insert(path.to_path_buf(), (bytes, now));
        self.files.retain(|_, (_, seen)| now.saturating_duration_since(*seen) <= self.retention);
    }

    /// Every single file and every shard group, with their sizes.
    pub fn candidates(&self) -> Vec<Candidate> {
        let mut out: Vec<Candidate> = self
            .files
            .iter()
            .map(|(p, (b, _))| Candidate { path: p.clone(), bytes: *b, shards: 1 })
            .collect();
        let mut groups: BTreeMap<(PathBuf, String), Candidate> = BTreeMap::new();
        for (path, (bytes, _)) in &self.files {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let Some(group) = shard_group(name) else { continue };
            let dir = path.parent().unwrap_or(Path::new("")).to_path_buf();
            let c = groups.entry((dir, group)).or_insert_with(|| Candidate {
                path: path.clone(),
                bytes: 0,
                shards: 0,
            });
            c.bytes += bytes;
            c.shards += 1;
        }
        out.extend(groups.into_values().filter(|c| c.shards > 1));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_names() {
        assert_eq!(
            shard_group("model-00001-of-00004.safetensors").as_deref(),
            Some("model-of-00004.safetensors")
        );
        assert_eq!(
            shard_group("model-00004-of-00004.safetensors").as_deref(),
            Some("model-of-00004.safetensors")
        );
        assert_eq!(shard_group("pytorch_model.bin"), None);
        assert_eq!(shard_group("a-b-of-c"), None);
    }

    #[test]
    fn shards_sum_and_old_files_are_forgotten() {
        let t0 = Instant::now();
        let mut idx = CheckpointIndex::new(Duration::from_secs(60));
        idx.observe(t0, Path::new("/old/step-1.pt"), 5);
        let later = t0 + Duration::from_secs(120);
        for i in 1..=3 {
            idx.observe(later, &PathBuf::from(format!("/ckpt/model-0000{i}-of-00003.safetensors")), 100);
        }
        let c = idx.candidates();
        assert!(!c.iter().any(|c| c.path == Path::new("/old/step-1.pt")), "retention: {c:?}");
        let group = c.iter().find(|c| c.shards == 3).expect("shard group");
        assert_eq!(group.bytes, 300);
        assert_eq!(c.iter().filter(|c| c.shards == 1).count(), 3);
    }
}
