//! Per-workload policies (`run --cgroup-root DIR`): every cgroup under DIR that an identity
//! source recognises is a workload with labels; the `--workload-policy` whose
//! `spec.workloadSelector` matches them governs it, the node default (`--policy`) everything
//! else. The programs are attached once at DIR; the kernel finds a socket's policy through
//! `RF_WORKLOADS` (cgroup id -> policy index, nearest ancestor wins), so a cgroup is governed
//! by the node default from its first instruction and by its own policy once the agent has
//! seen it (an inotify watch on the tree, and a rescan every `--watch-interval`).
//!
//! Parts, used in this order and never the other way: `scan` (the cgroup tree, I/O),
//! `table` (sans-IO: workloads, labels, chosen policy, kernel entries), `policies` (loading,
//! checking, numbering and applying the workload policies), `watch` (inotify), `tracker`
//! (ties them to the maps and the state file `workloads.json`).
mod policies;
mod scan;
mod table;
mod tracker;
mod watch;

pub use crate::config::WorkloadsConfig;
pub use policies::{WorkloadPolicies, WorkloadPolicy};
pub use scan::scan;
pub use table::{Change, Tracked, WorkloadTable};
pub use tracker::{print_workloads, recorded, Tracker, Wake, STATE_FILE};
