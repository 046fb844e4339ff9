//! Loading the embedded eBPF object, attaching it with pinned links, and removing it again.
//! Links are pinned so enforcement outlives the agent; a new agent attaches its programs
//! *before* it removes the links it adopted, so there is no gap on restart or upgrade.
//!
//! `cgroup` attaches the enforced cgroup's programs (every one loaded and verified before the
//! first is attached), `packet_path` the uplinks' tcx programs, `selfcheck` proves that the
//! kernel runs the packet-socket guard (BPF LSM) before the agent relies on it.
mod cgroup;
mod packet_path;
mod raw_link;
mod selfcheck;

use std::{
    fs,
    path::{Path, PathBuf},
};

use aya::{
    programs::links::{FdLink, PinnedLink},
    Ebpf, EbpfLoader,
};
use ringfence_common::{PROGRAMS, SKCACHE_MAP};
use tracing::{debug, info};

pub use cgroup::{attach_all, Hooks, Isolation, PacketSockets};
pub use packet_path::attach_packet_path;
pub use selfcheck::{probe_socket, SocketGuard, PROBE_SOCKET_COMMAND};

use crate::{error::AgentError, maps::maps_dir};

/// The eBPF object built from ebpf/ringfence-ebpf by build.rs.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ringfence"));

/// Where links are pinned inside the agent's bpffs directory.
pub fn links_dir(bpffs: &Path) -> PathBuf {
    bpffs.join("links")
}

/// True when a previous agent left pinned links (enforcement in force).
pub fn has_pinned_links(bpffs: &Path) -> bool {
    PROGRAMS.iter().any(|p| links_dir(bpffs).join(p).exists())
}

/// The cgroup links pinned now, by program name (in attach order).
pub fn pinned_links(bpffs: &Path) -> Vec<&'static str> {
    PROGRAMS.iter().copied().filter(|p| links_dir(bpffs).join(p).exists()).collect()
}

pub(crate) fn bpf_error(e: impl std::error::Error) -> AgentError {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let s_msg = s.to_string();
        if !msg.contains(&s_msg) {
            msg.push_str(": ");
            msg.push_str(&s_msg);
        }
        src = s.source();
    }
    if msg.contains("Operation not permitted") {
        msg.push_str(
            " (the kernel refused the bpf() call: run as root in the initial user namespace with \
             CAP_BPF, CAP_NET_ADMIN and CAP_SYS_ADMIN, and check kernel lockdown)",
        );
    }
    AgentError::BpfUnavailable(msg)
}

/// A program the kernel refused to load (the verifier's log says why).
pub(crate) fn load_error(program: &str, e: impl std::error::Error) -> AgentError {
    match bpf_error(e) {
        AgentError::BpfUnavailable(msg) => AgentError::BpfUnavailable(format!("loading {program}: {msg}")),
        other => other,
    }
}

/// Loads the object, creating the maps or reusing the ones pinned under `<bpffs>/maps`.
pub fn load(bpffs: &Path) -> Result<Ebpf, AgentError> {
    for dir in [maps_dir(bpffs), links_dir(bpffs)] {
        fs::create_dir_all(&dir).map_err(|e| AgentError::io("create", &dir, e))?;
    }
    // The socket storage is a BTF map, which has no pinning attribute: pin it by path so a
    // restarted agent's programs see what the adopted ones stored (passive-open marks).
    let skcache = maps_dir(bpffs).join(SKCACHE_MAP);
    EbpfLoader::new()
        .default_map_pin_directory(maps_dir(bpffs))
        .map_pin_path(SKCACHE_MAP, skcache)
        .load(EBPF_OBJECT)
        .map_err(bpf_error)
}

/// Pins `link` as `<links>/<name>`, replacing (and so detaching) a link pinned there before. The
/// new link is attached first, so the old and new programs overlap instead of leaving a gap.
fn pin_replacing(link: FdLink, links: &Path, name: &str) -> Result<(), AgentError> {
    let pin = links.join(name);
    // bpffs refuses names with a dot.
    let staging = links.join(format!("{name}_next"));
    if staging.exists() {
        fs::remove_file(&staging).map_err(|e| AgentError::io("remove stale pin", &staging, e))?;
    }
    link.pin(&staging).map_err(bpf_error)?;
    if pin.exists() {
        unpin(&pin)?;
        debug!(link = name, "replaced adopted link");
    }
    fs::rename(&staging, &pin).map_err(|e| AgentError::io("rename pin", &staging, e))
}

/// Removes a pinned link (detaching its program).
fn unpin(pin: &Path) -> Result<(), AgentError> {
    let link = PinnedLink::from_pin(pin).map_err(bpf_error)?;
    drop(link.unpin().map_err(|e| AgentError::io("unpin", pin, e))?);
    Ok(())
}

/// Detaches every pinned link and removes the pinned maps. Returns what was removed.
pub fn detach_all(bpffs: &Path) -> Result<Vec<PathBuf>, AgentError> {
    let mut removed = Vec::new();
    let links = links_dir(bpffs);
    for entry in read_dir_sorted(&links)? {
        unpin(&entry)?;
        info!(link = %entry.display(), "detached");
        removed.push(entry);
    }
    let maps = maps_dir(bpffs);
    for entry in read_dir_sorted(&maps)? {
        fs::remove_file(&entry).map_err(|e| AgentError::io("remove", &entry, e))?;
        removed.push(entry);
    }
    for dir in [links, maps] {
        if dir.exists() {
            fs::remove_dir(&dir).map_err(|e| AgentError::io("remove directory", &dir, e))?;
        }
    }
    // Best effort: the directory may be a mount point or hold other files.
    let _ = fs::remove_dir(bpffs);
    Ok(removed)
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>, AgentError> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut out = fs::read_dir(dir)
        .map_err(|e| AgentError::io("read", dir, e))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| AgentError::io("read", dir, e))?;
    out.sort();
    Ok(out)
}

/// A program of the object, as its concrete type.
fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, AgentError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or_else(|| AgentError::BpfUnavailable(format!("program {name} missing from the object")))?
        .try_into()
        .map_err(bpf_error)
}
