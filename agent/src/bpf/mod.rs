//! Loading the embedded eBPF object, attaching it with pinned links, and removing it again.
//! Links are pinned so enforcement outlives the agent; a new agent attaches its programs
//! *before* it removes the links it adopted, so there is no gap on restart or upgrade.
//!
//! `cgroup` attaches the enforced cgroup's programs (every one loaded and verified before the
//! first is attached), `packet_path` the uplinks' tcx programs, `selfcheck` proves that the
//! kernel runs the packet-socket guard (BPF LSM) before the agent relies on it.
mod cgroup;
mod layout;
mod object;
mod packet_path;
mod pins;
mod raw_link;
mod selfcheck;

use std::{fs, path::Path};

use aya::{Ebpf, EbpfLoader};
use ringfence_common::SKCACHE_MAP;

pub use cgroup::{attach_all, Hooks, Isolation, PacketSockets};
use object::bpf_error;
pub use object::EBPF_OBJECT;
pub use packet_path::attach_packet_path;
pub use pins::{detach_all, has_pinned_links, links_dir, pinned_links};
pub use selfcheck::{probe_socket, SocketGuard, Throwaway, PROBE_SOCKET_COMMAND};

use crate::{error::AgentError, maps::maps_dir};

/// Loads the object, creating the maps or reusing the ones pinned under `<bpffs>/maps` (when
/// their layout is this agent's, see `layout`).
pub fn load(bpffs: &Path) -> Result<Ebpf, AgentError> {
    layout::replace_unclonable_skcache(bpffs)?;
    layout::check_pinned_maps(bpffs)?;
    for dir in [maps_dir(bpffs), links_dir(bpffs)] {
        fs::create_dir_all(&dir).map_err(|e| AgentError::io("create", &dir, e))?;
    }
    // The socket storage is a BTF map, which has no pinning attribute: pin it by path so a
    // restarted agent's programs see what the adopted ones stored (passive-open marks). Its
    // flags come from the object (`BPF_F_CLONE`: accepted sockets inherit a listener's mark).
    let skcache = maps_dir(bpffs).join(SKCACHE_MAP);
    EbpfLoader::new()
        .default_map_pin_directory(maps_dir(bpffs))
        .map_pin_path(SKCACHE_MAP, skcache)
        .load(EBPF_OBJECT)
        .map_err(bpf_error)
}
