//! The workload cgroups: `RF_WORKLOADS` (cgroup id -> policy index) and the state word whose
//! epoch invalidates the programs' per-cgroup cache.
use std::collections::BTreeMap;

use ringfence_common::{WorkloadState, WORKLOADS_MAP, WORKLOAD_STATE_MAP};

use super::PinnedMaps;
use crate::error::AgentError;

impl PinnedMaps {
    /// The workload entries in the kernel, by cgroup id.
    pub fn workloads(&self) -> Result<BTreeMap<u64, u32>, AgentError> {
        self.workloads
            .iter()
            .collect::<Result<BTreeMap<_, _>, _>>()
            .map_err(|e| AgentError::map(WORKLOADS_MAP, e))
    }

    /// Makes the kernel's workload entries exactly `wanted` (cgroup id -> policy): stale entries
    /// removed, the rest upserted, then the epoch bumped so that no program keeps a cached
    /// answer from before.
    pub fn set_workloads(&mut self, wanted: &BTreeMap<u64, u32>) -> Result<(), AgentError> {
        let mut changed = false;
        let stale: Vec<u64> =
            self.workload_entries.keys().filter(|id| !wanted.contains_key(id)).copied().collect();
        for id in stale {
            match self.workloads.remove(&id) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(e) => return Err(AgentError::map(WORKLOADS_MAP, e)),
            }
            self.workload_entries.remove(&id);
            // The programs' cached answer for the cgroup itself goes with it (its descendants'
            // entries are invalidated by the epoch and age out of the LRU map).
            let _ = self.cg_cache.remove(&id);
            changed = true;
        }
        for (id, policy) in wanted {
            if self.workload_entries.get(id) != Some(policy) {
                self.workloads.insert(id, policy, 0).map_err(|e| AgentError::map(WORKLOADS_MAP, e))?;
                self.workload_entries.insert(*id, *policy);
                changed = true;
            }
        }
        let st = self.wl_state.get(&0, 0).map_err(|e| AgentError::map(WORKLOAD_STATE_MAP, e))?;
        if changed || st.count != wanted.len() as u32 {
            let next = WorkloadState { epoch: st.epoch.wrapping_add(1), count: wanted.len() as u32 };
            self.wl_state.set(0, next, 0).map_err(|e| AgentError::map(WORKLOAD_STATE_MAP, e))?;
        }
        Ok(())
    }

    /// Adds one workload entry without touching the others (the self-test's throwaway cgroup,
    /// written by another process than the running agent).
    pub fn add_workload(&mut self, id: u64, policy: u32) -> Result<(), AgentError> {
        self.workloads.insert(id, policy, 0).map_err(|e| AgentError::map(WORKLOADS_MAP, e))?;
        self.bump_state(1)
    }

    /// Removes one workload entry added by [`PinnedMaps::add_workload`].
    pub fn remove_workload(&mut self, id: u64) -> Result<(), AgentError> {
        match self.workloads.remove(&id) {
            Ok(()) => self.bump_state(-1),
            Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(AgentError::map(WORKLOADS_MAP, e)),
        }
    }

    /// New epoch, count changed by `delta`.
    fn bump_state(&mut self, delta: i32) -> Result<(), AgentError> {
        let st = self.wl_state.get(&0, 0).map_err(|e| AgentError::map(WORKLOAD_STATE_MAP, e))?;
        let next =
            WorkloadState { epoch: st.epoch.wrapping_add(1), count: st.count.saturating_add_signed(delta) };
        self.wl_state.set(0, next, 0).map_err(|e| AgentError::map(WORKLOAD_STATE_MAP, e))
    }
}
