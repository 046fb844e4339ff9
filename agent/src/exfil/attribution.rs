//! Which process opened a flow. The packet path (which counts the bytes) has no process
//! context; the connect/sendmsg hooks record, in a pinned kernel map, the process whose call
//! to each (cgroup, destination) was last allowed. Being pinned, it survives agent restarts, so
//! alerts raised by a restarted agent still name the process.
use std::{net::IpAddr, path::Path};

use aya::maps::{HashMap, MapData};
use ringfence_common::{DestKey, Owner, OWNERS_MAP};
use serde::Serialize;

use crate::{
    error::AgentError,
    maps::{maps_dir, open},
};

/// The process behind a flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Process {
    pub pid: u32,
    pub comm: String,
}

impl Process {
    fn from_owner(o: &Owner) -> Self {
        let len = o.comm.iter().position(|&b| b == 0).unwrap_or(o.comm.len());
        Process { pid: o.pid, comm: String::from_utf8_lossy(&o.comm[..len]).into_owned() }
    }
}

/// The owner map's key for a cgroup and destination (IPv4-mapped IPv6 as IPv4, as the hooks do).
pub fn dest_key(cgroup_id: u64, dst: IpAddr) -> DestKey {
    let mut k = DestKey { cgroup_id, ..DestKey::default() };
    match ringfence_policy::normalize_addr(dst) {
        IpAddr::V4(a) => {
            k.addr[..4].copy_from_slice(&a.octets());
            k.family = 4;
        }
        IpAddr::V6(a) => {
            k.addr = a.octets();
            k.family = 6;
        }
    }
    k
}

/// The pinned owner map.
pub struct Owners {
    map: HashMap<MapData, DestKey, Owner>,
}

impl Owners {
    pub fn open(bpffs: &Path) -> Result<Self, AgentError> {
        Ok(Self { map: open(&maps_dir(bpffs), OWNERS_MAP)? })
    }

    /// The process that last connected from `cgroup_id` to `dst`.
    pub fn find(&self, cgroup_id: u64, dst: IpAddr) -> Option<Process> {
        self.map.get(&dest_key(cgroup_id, dst), 0).ok().map(|o| Process::from_owner(&o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_match_the_hooks_and_comm_stops_at_nul() {
        let k = dest_key(9, "::ffff:203.0.113.5".parse().unwrap());
        assert_eq!((k.family, &k.addr[..4], k.cgroup_id), (4, &[203, 0, 113, 5][..], 9));
        let k6 = dest_key(9, "2001:db8::1".parse().unwrap());
        assert_eq!(k6.family, 6);
        let mut comm = [0u8; 16];
        comm[..7].copy_from_slice(b"python3");
        let p = Process::from_owner(&Owner { pid: 7, port: 443, comm, ts_ns: 1 });
        assert_eq!(p, Process { pid: 7, comm: "python3".into() });
    }
}
