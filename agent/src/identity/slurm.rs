//! The Slurm identity source: job cgroups as Slurm's cgroup/v2 plugin lays them out, labelled
//! from the per-job file the Ringfence prolog writes (`deploy/slurm/prolog.sh`).
//!
//! slurmd keeps the steps of every job under one delegated cgroup, the slurmstepd scope
//! (`/sys/fs/cgroup/system.slice/slurmstepd.scope`, `<nodename>_slurmstepd.scope` when built with
//! multiple-slurmd support, as Debian's package is; systemd creates it, or slurmd itself with
//! `IgnoreSystemd=yes`). Verified against Debian's slurmd 22.05.8 by `tests/tests/slurm.rs`:
//!
//! ```text
//! slurmstepd.scope/slurmd                           slurmd itself (not a job)
//! slurmstepd.scope/system                           slurmstepd waiting area (not a job)
//! slurmstepd.scope/job_4242/step_batch/slurm        the step's slurmstepd
//! slurmstepd.scope/job_4242/step_batch/user/task_0  the user's processes
//! slurmstepd.scope/job_4242/step_extern/user/...    adopted ssh sessions (pam_slurm_adopt)
//! slurmstepd.scope/job_4242/step_0/user/task_3      srun step 0, task 3 (task_special when
//!                                                   task/cgroup constrains nothing)
//! ```
//!
//! Paths are relative to the agent's cgroup root: either the scope itself (`job_4242/...`) or
//! any ancestor of it (`system.slice/slurmstepd.scope/job_4242/...`). Every cgroup at or below
//! `job_<id>` is the job's; `step_<id>` below it names the step (`batch`, `extern`,
//! `interactive`, a number, or `<n>+<component>` for heterogeneous steps).
//!
//! The prolog writes `<jobInfoDir>/<jobid>` as `key=value` lines (`user`, `account`,
//! `partition`, `profile`). A job whose file is missing still gets `slurm.job` but no
//! profile, so the node's default policy governs it (fail closed).
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::identity::workload::{Labels, PROFILE_LABEL};

/// The source name in [`Workload::source`](crate::identity::workload::Workload::source).
pub const SOURCE: &str = "slurm";
/// Job id label.
pub const JOB_LABEL: &str = "slurm.job";
/// Step label (`batch`, `extern`, `interactive`, `0`, `1+0`, ...).
pub const STEP_LABEL: &str = "slurm.step";

/// Which `key=value` keys of the job file become which labels.
const JOB_FILE_KEYS: [(&str, &str); 4] = [
    ("user", "slurm.user"),
    ("account", "slurm.account"),
    ("partition", "slurm.partition"),
    ("profile", PROFILE_LABEL),
];

/// A job cgroup path, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlurmCgroup {
    pub job: u32,
    /// `None` for the job cgroup itself.
    pub step: Option<String>,
}

/// The job and step of `path` (relative to the cgroup root), if it is a Slurm job cgroup.
pub fn parse_slurm_cgroup(path: &Path) -> Option<SlurmCgroup> {
    let components: Vec<&str> = path.to_str()?.split('/').filter(|c| !c.is_empty()).collect();
    let at = components.iter().enumerate().position(|(i, c)| {
        c.starts_with("job_") && (i == 0 || components[i - 1].ends_with("slurmstepd.scope"))
    })?;
    let job = components[at].strip_prefix("job_")?;
    if job.is_empty() || !job.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let job = job.parse().ok()?;
    let step = match components.get(at + 1) {
        None => None,
        Some(c) => Some(c.strip_prefix("step_").filter(|s| valid_step(s))?.to_owned()),
    };
    Some(SlurmCgroup { job, step })
}

fn valid_step(step: &str) -> bool {
    let number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    matches!(step, "batch" | "extern" | "interactive")
        || number(step)
        || step.split_once('+').is_some_and(|(a, b)| number(a) && number(b))
}

/// The labels in a job file (`key=value` lines; `#` comments and blank lines skipped, unknown
/// keys ignored, empty values left out). Lines that are not `key=value` are reported.
pub fn parse_job_info(text: &str) -> (Labels, Vec<String>) {
    let mut labels = Labels::new();
    let mut problems = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            problems.push(format!("line {}: expected key=value, found `{line}`", n + 1));
            continue;
        };
        let value = value.trim();
        if let Some((_, label)) = JOB_FILE_KEYS.iter().find(|(k, _)| *k == key.trim()) {
            if !value.is_empty() {
                labels.insert((*label).to_owned(), value.to_owned());
            }
        }
    }
    (labels, problems)
}

/// The labels of a parsed job cgroup, with the job file's labels (if any) under them.
pub fn labels_for(cgroup: &SlurmCgroup, job_info: Option<Labels>) -> Labels {
    let mut labels = job_info.unwrap_or_default();
    labels.insert(JOB_LABEL.to_owned(), cgroup.job.to_string());
    if let Some(step) = &cgroup.step {
        labels.insert(STEP_LABEL.to_owned(), step.clone());
    }
    labels
}

/// The Slurm source: parses the path, reads `<job_info_dir>/<jobid>` for the rest.
#[derive(Clone, Debug)]
pub struct SlurmSource {
    job_info_dir: PathBuf,
}

impl SlurmSource {
    pub fn new(job_info_dir: impl Into<PathBuf>) -> Self {
        SlurmSource { job_info_dir: job_info_dir.into() }
    }

    /// Changes whenever a job file is written, renamed or removed (the directory's mtime).
    pub fn version(&self) -> u64 {
        std::fs::metadata(&self.job_info_dir)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as u64)
    }

    /// The labels of `path` if it is a Slurm job cgroup. A missing or unreadable job file
    /// leaves only the job and step labels (logged unless missing).
    pub fn labels(&self, path: &Path) -> Option<Labels> {
        let cgroup = parse_slurm_cgroup(path)?;
        let file = self.job_info_dir.join(cgroup.job.to_string());
        let info = match std::fs::read_to_string(&file) {
            Ok(text) => {
                let (labels, problems) = parse_job_info(&text);
                for p in problems {
                    tracing::warn!(file = %file.display(), problem = %p, "slurm job file: line skipped");
                }
                Some(labels)
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                tracing::debug!(job = cgroup.job, file = %file.display(), "slurm job file missing: no profile");
                None
            }
            Err(e) => {
                tracing::warn!(job = cgroup.job, file = %file.display(), error = %e, "slurm job file unreadable: no profile");
                None
            }
        };
        Some(labels_for(&cgroup, info))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(path: &str) -> Option<(u32, Option<String>)> {
        parse_slurm_cgroup(Path::new(path)).map(|c| (c.job, c.step))
    }

    #[test]
    fn job_and_step_from_real_layouts() {
        let some = |job, step: &str| Some((job, Some(step.to_owned())));
        // Root = the slurmstepd scope.
        assert_eq!(parsed("job_4242/step_batch/user/task_0"), some(4242, "batch"));
        assert_eq!(parsed("job_4242/step_batch/slurm"), some(4242, "batch"));
        assert_eq!(parsed("job_4242/step_extern/user/task_special"), some(4242, "extern"));
        assert_eq!(parsed("job_4242/step_0/user/task_3"), some(4242, "0"));
        assert_eq!(parsed("job_4242/step_interactive/user/task_0"), some(4242, "interactive"));
        assert_eq!(parsed("job_4243/step_1+0/user/task_0"), some(4243, "1+0"));
        assert_eq!(parsed("job_4242"), Some((4242, None)));
        // Root = /sys/fs/cgroup, one or several slurmd per node.
        assert_eq!(parsed("system.slice/slurmstepd.scope/job_77/step_batch/user/task_0"), some(77, "batch"));
        assert_eq!(
            parsed("system.slice/gpu-node-07_slurmstepd.scope/job_78/step_2/user/task_1"),
            some(78, "2")
        );
        // What Debian's slurmd 22.05.8 made in tests/tests/slurm.rs (nothing constrained: tasks
        // in task_special), from an ancestor of its `<node>_slurmstepd.scope`.
        let scope = "system.slice/localhost_slurmstepd.scope";
        assert_eq!(parsed(&format!("{scope}/job_1")), Some((1, None)));
        assert_eq!(parsed(&format!("{scope}/job_1/step_batch/user/task_special")), some(1, "batch"));
        assert_eq!(parsed(&format!("{scope}/job_1/step_0/slurm")), some(1, "0"));
        assert_eq!(parsed(&format!("{scope}/slurmd")), None);
        assert_eq!(parsed(&format!("{scope}/system")), None);
    }

    #[test]
    fn other_cgroups_are_not_jobs() {
        for path in [
            "system",
            "slurmd",
            "system.slice/slurmstepd.scope/system",
            "system.slice/slurmd.service",
            "job_x/step_0",
            "job_/step_0",
            "job_12/step_/user",
            "job_12/step_abc/user",
            "user.slice/user-1000.slice/job_12/step_0",
            "kubepods.slice/job_12",
        ] {
            assert_eq!(parsed(path), None, "{path} taken for a job cgroup");
        }
    }

    #[test]
    fn job_file_labels() {
        let text = "# written by ringfence prolog\nuser=alice\naccount=ml-research\npartition=gpu\n\
                    profile=llm-training\nnodes=4\nbroken line\nprofile_extra=\n";
        let (labels, problems) = parse_job_info(text);
        let expected: Labels = [
            ("slurm.user", "alice"),
            ("slurm.account", "ml-research"),
            ("slurm.partition", "gpu"),
            ("ringfence.dev/profile", "llm-training"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into();
        assert_eq!(labels, expected);
        assert_eq!(problems, ["line 7: expected key=value, found `broken line`"]);
    }

    #[test]
    fn missing_job_file_fails_closed() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("4242"), "user=alice\nprofile=llm-training\n").expect("job file");
        let source = SlurmSource::new(dir.path());
        let with = source.labels(Path::new("job_4242/step_0/user/task_0")).expect("job cgroup");
        assert_eq!(with.get(PROFILE_LABEL).map(String::as_str), Some("llm-training"));
        assert_eq!((with[JOB_LABEL].as_str(), with[STEP_LABEL].as_str()), ("4242", "0"));
        let without = source.labels(Path::new("job_4343/step_batch/user/task_0")).expect("job cgroup");
        let keys: Vec<&str> = without.keys().map(String::as_str).collect();
        assert_eq!(keys, [JOB_LABEL, STEP_LABEL], "no profile without the job file");
        assert_eq!(source.labels(Path::new("system")), None);
    }
}
