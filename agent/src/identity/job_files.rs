//! Noticing Slurm job files (written by the prolog) appear, change or go, so the caller can
//! re-resolve that job's cgroups: a job whose cgroup appeared before its file would otherwise
//! keep the node default. Polled, like the agent's other file watches; the comparison is pure.
use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::Path;

/// Job id to a digest of its file's content.
pub type JobFileDigests = BTreeMap<u32, u64>;

/// The job files seen at the last [`JobFiles::update`].
#[derive(Clone, Debug, Default)]
pub struct JobFiles {
    seen: JobFileDigests,
}

impl JobFiles {
    pub fn new() -> Self {
        Self::default()
    }

    /// The jobs whose file appeared, changed or vanished since the last call, in id order;
    /// `current` becomes what was seen.
    pub fn update(&mut self, current: JobFileDigests) -> Vec<u32> {
        let mut changed: Vec<u32> = current
            .iter()
            .filter(|(job, digest)| self.seen.get(job) != Some(digest))
            .map(|(job, _)| *job)
            .chain(self.seen.keys().filter(|job| !current.contains_key(job)).copied())
            .collect();
        changed.sort_unstable();
        self.seen = current;
        changed
    }

    /// The job files in `dir`: files named by a job id (the prolog's temporary `.<id>.<pid>`
    /// files and anything else are left out). An unreadable directory reads as empty.
    pub fn scan(dir: &Path) -> JobFileDigests {
        let Ok(entries) = std::fs::read_dir(dir) else { return JobFileDigests::new() };
        entries
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let name = entry.file_name();
                let job: u32 = name.to_str()?.parse().ok()?;
                let content = std::fs::read(entry.path()).ok()?;
                let mut h = DefaultHasher::new();
                content.hash(&mut h);
                Some((job, h.finish()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appeared_changed_and_vanished_jobs() {
        let mut files = JobFiles::new();
        assert_eq!(files.update([(4242, 1), (4243, 2)].into()), [4242, 4243]);
        assert_eq!(files.update([(4242, 1), (4243, 2)].into()), Vec::<u32>::new());
        assert_eq!(files.update([(4242, 9), (4300, 3)].into()), [4242, 4243, 4300]);
    }

    #[test]
    fn scans_only_job_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("4242"), "user=alice\n").expect("job file");
        std::fs::write(dir.path().join(".4243.991"), "user=bob\n").expect("temporary file");
        std::fs::write(dir.path().join("README"), "x").expect("other file");
        let mut files = JobFiles::new();
        assert_eq!(files.update(JobFiles::scan(dir.path())), [4242]);
        std::fs::write(dir.path().join("4242"), "user=alice\nprofile=llm-training\n").expect("job file");
        assert_eq!(files.update(JobFiles::scan(dir.path())), [4242], "content change noticed");
        assert!(JobFiles::scan(&dir.path().join("absent")).is_empty());
    }
}
