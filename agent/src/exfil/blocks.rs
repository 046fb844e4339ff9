//! The kernel's exfiltration blocks (pinned `RF_BLOCKS`), shared by the running agent (which
//! sets and expires them) and the `release`/`blocks` commands (which work on the pins directly,
//! with or without a running agent).
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
    time::Duration,
};

use aya::maps::{Array, HashMap, MapData};
use ringfence_common::{BlockEntry, BlockKey, BLOCKING_MAP, BLOCKS_MAP};
use serde::Serialize;

use super::attribution::dest_key;
use crate::{
    clock::monotonic_ns,
    error::AgentError,
    maps::{maps_dir, open},
};

/// One block as people see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Block {
    pub cgroup_id: u64,
    pub destination: IpAddr,
    /// Seconds until it lifts (0 once expired).
    pub expires_in_secs: u64,
    pub age_secs: u64,
}

/// Which blocks `release` lifts.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    pub cgroup_id: Option<u64>,
    pub destination: Option<IpAddr>,
}

impl Selector {
    fn matches(&self, b: &Block) -> bool {
        self.cgroup_id.is_none_or(|c| c == b.cgroup_id) && self.destination.is_none_or(|d| d == b.destination)
    }
}

fn destination(k: &BlockKey) -> IpAddr {
    if k.family == 4 {
        IpAddr::V4(Ipv4Addr::new(k.addr[0], k.addr[1], k.addr[2], k.addr[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(k.addr))
    }
}

/// Handles on the pinned block maps.
pub struct BlockTable {
    blocks: HashMap<MapData, BlockKey, BlockEntry>,
    count: Array<MapData, u32>,
}

impl BlockTable {
    pub fn open(bpffs: &Path) -> Result<Self, AgentError> {
        let dir = maps_dir(bpffs);
        Ok(Self { blocks: open(&dir, BLOCKS_MAP)?, count: open(&dir, BLOCKING_MAP)? })
    }

    /// Blocks `destination` for `cgroup_id` for `ttl` (replacing an existing block's expiry).
    pub fn insert(&mut self, cgroup_id: u64, destination: IpAddr, ttl: Duration) -> Result<(), AgentError> {
        let now = monotonic_ns();
        let entry = BlockEntry { expires_ns: now.saturating_add(ttl.as_nanos() as u64), created_ns: now };
        self.blocks
            .insert(dest_key(cgroup_id, destination), entry, 0)
            .map_err(|e| AgentError::map(BLOCKS_MAP, e))?;
        self.sync_count()
    }

    /// Every block, expired ones included (until [`BlockTable::expire`] removes them).
    pub fn list(&self) -> Result<Vec<Block>, AgentError> {
        let now = monotonic_ns();
        let mut out = Vec::new();
        for item in self.blocks.iter() {
            let (k, v) = item.map_err(|e| AgentError::map(BLOCKS_MAP, e))?;
            out.push(Block {
                cgroup_id: k.cgroup_id,
                destination: destination(&k),
                expires_in_secs: v.expires_ns.saturating_sub(now).div_ceil(1_000_000_000),
                age_secs: now.saturating_sub(v.created_ns) / 1_000_000_000,
            });
        }
        out.sort_by_key(|b| (b.cgroup_id, b.destination));
        Ok(out)
    }

    /// Lifts the blocks the selector matches; returns them.
    pub fn release(&mut self, sel: &Selector) -> Result<Vec<Block>, AgentError> {
        self.remove_where(|b| sel.matches(b)).map(|(lifted, _)| lifted)
    }

    /// Removes expired blocks; returns them and the blocks still in force (one read of the map).
    pub fn expire(&mut self) -> Result<(Vec<Block>, Vec<Block>), AgentError> {
        self.remove_where(|b| b.expires_in_secs == 0)
    }

    /// Removes the blocks `pred` picks; returns (removed, kept).
    fn remove_where(
        &mut self,
        pred: impl Fn(&Block) -> bool,
    ) -> Result<(Vec<Block>, Vec<Block>), AgentError> {
        let (removed, kept): (Vec<Block>, Vec<Block>) = self.list()?.into_iter().partition(|b| pred(b));
        for b in &removed {
            // Already gone (removed by the agent or an operator meanwhile) is fine.
            let _ = self.blocks.remove(&dest_key(b.cgroup_id, b.destination));
        }
        if !removed.is_empty() {
            self.sync_count()?;
        }
        Ok((removed, kept))
    }

    /// Tells the packet path how many blocks exist (0 lets it skip the lookup).
    fn sync_count(&mut self) -> Result<(), AgentError> {
        let n = self.blocks.keys().count() as u32;
        self.count.set(0, n, 0).map_err(|e| AgentError::map(BLOCKING_MAP, e))
    }
}
