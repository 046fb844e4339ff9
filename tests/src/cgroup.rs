//! cgroup v2 test cgroup guard.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::util::next_id;

/// Name prefix of every cgroup created by [`TestCgroup::new`].
pub(crate) const CGROUP_PREFIX: &str = "ringfence-test-";

/// Returns the cgroup2 mount point found in `/proc/self/mountinfo`
/// (`/sys/fs/cgroup/unified` on hybrid systems, `/sys/fs/cgroup` on pure v2).
/// Panics if there is none.
pub fn cgroup2_mount() -> PathBuf {
    let info = fs::read_to_string("/proc/self/mountinfo").expect("read /proc/self/mountinfo");
    for line in info.lines() {
        // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        if right.split_whitespace().next() == Some("cgroup2") {
            if let Some(mp) = left.split_whitespace().nth(4) {
                return PathBuf::from(unescape_mountinfo(mp));
            }
        }
    }
    panic!("no cgroup2 filesystem in /proc/self/mountinfo (cgroup v2 is required)");
}

fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")
}

/// A cgroup `ringfence-test-<pid>-<n>` directly under the cgroup2 mount.
///
/// On drop every process in it is killed (SIGKILL, waiting up to ~2 s for it
/// to empty) and the directory is removed.
#[derive(Debug)]
pub struct TestCgroup {
    path: PathBuf,
}

impl TestCgroup {
    /// Creates a fresh test cgroup. Panics if it cannot be created.
    pub fn new() -> TestCgroup {
        let root = cgroup2_mount();
        let path = root.join(format!("{CGROUP_PREFIX}{}-{}", std::process::id(), next_id()));
        fs::create_dir(&path).unwrap_or_else(|e| panic!("create test cgroup {}: {e}", path.display()));
        TestCgroup { path }
    }

    /// A cgroup at `path` (its parent must exist), removed on drop.
    pub fn at(path: &Path) -> TestCgroup {
        fs::create_dir(path).unwrap_or_else(|e| panic!("create cgroup {}: {e}", path.display()));
        TestCgroup { path: path.to_owned() }
    }

    /// A child cgroup `name` of this one (e.g. a workload under a cgroup root), removed on drop.
    pub fn child(&self, name: &str) -> TestCgroup {
        let path = self.path.join(name);
        fs::create_dir(&path).unwrap_or_else(|e| panic!("create cgroup {}: {e}", path.display()));
        TestCgroup { path }
    }

    /// The cgroup directory (what the agent attaches its programs to).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `<path>/cgroup.procs`.
    pub fn procs_path(&self) -> PathBuf {
        self.path.join("cgroup.procs")
    }

    /// Pids currently listed in `cgroup.procs`.
    pub fn pids(&self) -> Vec<i32> {
        read_pids(&self.path)
    }

    /// SIGKILLs every process in the cgroup and waits (bounded by `timeout`)
    /// until `cgroup.procs` is empty. Returns true when it emptied.
    pub fn kill_all(&self, timeout: Duration) -> bool {
        kill_cgroup(&self.path, timeout)
    }
}

impl Default for TestCgroup {
    fn default() -> Self {
        TestCgroup::new()
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        remove_tree(&self.path);
    }
}

/// Kills everything in the cgroup at `path` and its descendants and removes them, deepest
/// first (a test's workload cgroups, or ones a program under test made).
pub(crate) fn remove_tree(path: &Path) {
    if let Ok(entries) = fs::read_dir(path) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_tree(&e.path());
            }
        }
    }
    if !kill_cgroup(path, Duration::from_secs(2)) {
        eprintln!("warning: cgroup {} still has processes", path.display());
    }
    remove_cgroup_dir(path);
}

fn read_pids(path: &Path) -> Vec<i32> {
    match fs::read_to_string(path.join("cgroup.procs")) {
        Ok(s) => s.lines().filter_map(|l| l.trim().parse().ok()).collect(),
        Err(_) => Vec::new(),
    }
}

/// Kills everything in the cgroup at `path`; true once it is empty.
pub(crate) fn kill_cgroup(path: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let pids = read_pids(path);
        if pids.is_empty() {
            return true;
        }
        // cgroup.kill (Linux 5.14+) also catches processes forking meanwhile.
        let _ = fs::write(path.join("cgroup.kill"), "1");
        for pid in pids {
            if pid > 0 {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        if Instant::now() >= deadline {
            return read_pids(path).is_empty();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Removes a (leaf) cgroup directory, retrying while the kernel reports it busy.
pub(crate) fn remove_cgroup_dir(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match fs::remove_dir(path) {
            Ok(()) => return,
            Err(e) if e.kind() == ErrorKind::NotFound => return,
            Err(e) if Instant::now() >= deadline => {
                eprintln!("warning: cannot remove cgroup {}: {e}", path.display());
                return;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}
