//! Which policy governs a socket or packet: the entry of the nearest ancestor cgroup (the
//! cgroup itself included) in `RF_WORKLOADS`, else the node default. Cgroups never move in the
//! hierarchy, so the answer per cgroup id is cached until the agent bumps the epoch after a
//! change of the workload entries; with no entry at all (one workload per node, `--cgroup`)
//! everything is the default policy after one array read.
use aya_ebpf::{
    bindings::__sk_buff,
    helpers::generated::{
        bpf_get_current_ancestor_cgroup_id, bpf_get_current_cgroup_id, bpf_skb_ancestor_cgroup_id,
    },
};
use ringfence_common::{CgPolicy, WorkloadState, DEFAULT_POLICY, MAX_CGROUP_LEVELS};

use crate::maps::{RF_CGCACHE, RF_WLSTATE, RF_WORKLOADS};

/// The deepest ancestor (levels 1.., the cgroup itself last) with a workload entry: its policy
/// and cgroup id (0 when none has one).
#[inline(always)]
fn walk(ancestor: impl Fn(i32) -> u64) -> (u32, u64) {
    let mut found = (DEFAULT_POLICY, 0);
    for level in 1..MAX_CGROUP_LEVELS {
        let id = ancestor(level);
        if id == 0 {
            break;
        }
        // SAFETY: a value of the map, copied at once.
        if let Some(p) = unsafe { RF_WORKLOADS.get(&id) } {
            found = (*p, id);
        }
    }
    found
}

/// The governing policy and workload of a cgroup.
#[inline(always)]
fn resolve(cgroup_id: u64, ancestor: impl Fn(i32) -> u64) -> Governed {
    let st: WorkloadState = RF_WLSTATE.get(0).copied().unwrap_or_default();
    if st.count == 0 {
        return Governed { policy: DEFAULT_POLICY, workload: 0 };
    }
    if let Some(c) = RF_CGCACHE.get_ptr(&cgroup_id) {
        // SAFETY: a value pointer of the map, read once.
        let c = unsafe { *c };
        if c.epoch == st.epoch {
            return Governed { policy: c.policy, workload: c.workload };
        }
    }
    let (policy, workload) = walk(ancestor);
    let _ = RF_CGCACHE.insert(&cgroup_id, &CgPolicy { policy, epoch: st.epoch, workload }, 0);
    Governed { policy, workload }
}

/// Which policy governs a cgroup, and the workload (cgroup id with the workload entry; 0 for
/// the node default) its exfiltration budgets are counted for.
#[derive(Clone, Copy)]
pub struct Governed {
    pub policy: u32,
    pub workload: u64,
}

/// The policy of the current task's cgroup (socket calls: connect, sendmsg, socket, setsockopt).
/// Not inlined (neither is the skb variant): the walk's locals get their own frame, off the
/// stack of the verdict that follows.
#[inline(never)]
pub fn policy_of_current() -> u32 {
    governing_current().policy
}

/// [`policy_of_current`] with the workload (inlined into its callers: a BPF subprogram returns
/// one register, not a pair).
#[inline(always)]
pub fn governing_current() -> Governed {
    // SAFETY: helpers without arguments to check.
    let cg = unsafe { bpf_get_current_cgroup_id() };
    // SAFETY: the helper takes any level and returns 0 past the task's own.
    resolve(cg, |level| unsafe { bpf_get_current_ancestor_cgroup_id(level) })
}

/// The policy of the cgroup of the socket that sent `skb` (`cgroup_id` is its cgroup; 0 for a
/// packet without a local socket, which the node default decides).
#[inline(never)]
pub fn policy_of_skb(skb: *mut __sk_buff, cgroup_id: u64) -> u32 {
    governing_skb(skb, cgroup_id).policy
}

/// The workload `skb`'s sender belongs to (see [`Governed`]); not inlined, like
/// [`policy_of_skb`].
#[inline(never)]
pub fn workload_of_skb(skb: *mut __sk_buff, cgroup_id: u64) -> u64 {
    governing_skb(skb, cgroup_id).workload
}

/// The workload of the current task (connect hooks).
#[inline(never)]
pub fn workload_of_current() -> u64 {
    governing_current().workload
}

/// [`policy_of_skb`] with the workload.
#[inline(always)]
fn governing_skb(skb: *mut __sk_buff, cgroup_id: u64) -> Governed {
    if cgroup_id == 0 {
        return Governed { policy: DEFAULT_POLICY, workload: 0 };
    }
    // SAFETY: the program's own skb; the helper returns 0 past the socket cgroup's level.
    resolve(cgroup_id, |level| unsafe { bpf_skb_ancestor_cgroup_id(skb, level) })
}
