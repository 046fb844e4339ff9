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
}
