//! Removal of resources left behind by killed test processes.

use std::fs;

use crate::bpffs::{self, BPFFS_BASE};
use crate::cgroup::{self, cgroup2_mount, CGROUP_PREFIX};
use crate::netns::NETNS_PREFIX;
use crate::util::{pid_alive, run_unchecked};

/// Removes lab leftovers (netns `rf-*`, cgroups `ringfence-test-*`, bpffs
/// mounts under `/run/ringfence-test`) whose creating process is gone, e.g.
/// after a test binary was SIGKILLed. Resources of live processes are kept.
pub fn cleanup_stale() {
    let dead = |name: &str| -> bool {
        let mut parts = name.rsplit('-');
        parts.next();
        matches!(parts.next().and_then(|p| p.parse::<u32>().ok()), Some(pid) if !pid_alive(pid))
    };
    let out = run_unchecked("list netns", "ip", &["netns", "list"]);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        if name.starts_with(NETNS_PREFIX) && dead(name) {
            run_unchecked("delete stale netns", "ip", &["netns", "del", name]);
        }
    }
    if let Ok(entries) = fs::read_dir(cgroup2_mount()) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with(CGROUP_PREFIX) && dead(&name) {
                // With its children (workloads, or the cgroups a real slurmd made below it).
                cgroup::remove_tree(&e.path());
            }
        }
    }
    if let Ok(entries) = fs::read_dir(BPFFS_BASE) {
        for e in entries.flatten() {
            if dead(&e.file_name().to_string_lossy()) {
                bpffs::unmount_and_remove(&e.path());
            }
        }
    }
}
