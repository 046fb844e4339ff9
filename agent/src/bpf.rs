//! Loading the embedded eBPF object, attaching it to the cgroup with pinned links, and removing
//! it again. Links are pinned so enforcement outlives the agent; a new agent attaches its
//! programs *before* it removes the links it adopted, so there is no gap on restart or upgrade.
use std::{
    fs::{self, File},
    path::{Path, PathBuf},
};

use aya::{
    maps::{CgroupArray, ProgramArray},
    programs::{
        links::{FdLink, PinnedLink},
        CgroupAttachMode, CgroupSockAddr, SchedClassifier, TcAttachType,
    },
    Ebpf, EbpfLoader,
};
use ringfence_common::{CGROUP_MAP, PROGRAMS, TAILS_MAP, TC_EGRESS, TC_INGRESS, TC_VERDICT};
use tracing::{debug, info};

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

fn bpf_error(e: impl std::error::Error) -> AgentError {
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

/// Loads the object, creating the maps or reusing the ones pinned under `<bpffs>/maps`.
pub fn load(bpffs: &Path) -> Result<Ebpf, AgentError> {
    for dir in [maps_dir(bpffs), links_dir(bpffs)] {
        fs::create_dir_all(&dir).map_err(|e| AgentError::io("create", &dir, e))?;
    }
    EbpfLoader::new().default_map_pin_directory(maps_dir(bpffs)).load(EBPF_OBJECT).map_err(bpf_error)
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
        let old = PinnedLink::from_pin(&pin).map_err(bpf_error)?;
        drop(old.unpin().map_err(|e| AgentError::io("unpin", &pin, e))?);
        debug!(link = name, "replaced adopted link");
    }
    fs::rename(&staging, &pin).map_err(|e| AgentError::io("rename pin", &staging, e))
}

/// Loads every cgroup program and attaches it to `cgroup`, replacing previously pinned links;
/// records the cgroup for the packet path.
pub fn attach_all(ebpf: &mut Ebpf, cgroup: &Path, bpffs: &Path) -> Result<(), AgentError> {
    let cg = File::open(cgroup).map_err(|e| AgentError::io("open cgroup", cgroup, e))?;
    let mut cgroups: CgroupArray<_> = ebpf
        .map_mut(CGROUP_MAP)
        .ok_or_else(|| AgentError::BpfUnavailable(format!("map {CGROUP_MAP} missing from the object")))?
        .try_into()
        .map_err(bpf_error)?;
    cgroups.set(0, std::os::fd::AsRawFd::as_raw_fd(&cg), 0).map_err(bpf_error)?;
    let links = links_dir(bpffs);
    for name in PROGRAMS {
        let prog: &mut CgroupSockAddr = ebpf
            .program_mut(name)
            .ok_or_else(|| AgentError::BpfUnavailable(format!("program {name} missing from the object")))?
            .try_into()
            .map_err(bpf_error)?;
        prog.load().map_err(bpf_error)?;
        // With bpf_link_create (kernel >= 5.7) cgroup links are always multi-attach and the
        // kernel rejects any attach flag, so the mode must be the default (no flags).
        let id = prog.attach(&cg, CgroupAttachMode::Single).map_err(bpf_error)?;
        let link: FdLink = prog.take_link(id).map_err(bpf_error)?.try_into().map_err(bpf_error)?;
        pin_replacing(link, &links, name)?;
    }
    Ok(())
}

/// The pin name of a packet-path link.
fn tc_pin(program: &str, interface: &str) -> String {
    format!("{program}_{interface}")
}

/// Attaches the packet-path programs (tcx) to each uplink interface of this network namespace,
/// and removes packet-path links of interfaces no longer listed.
pub fn attach_packet_path(ebpf: &mut Ebpf, interfaces: &[String], bpffs: &Path) -> Result<(), AgentError> {
    let links = links_dir(bpffs);
    // The egress program tail-calls the verdict program: load it and fill the slot first.
    let verdict: &mut SchedClassifier = ebpf
        .program_mut(TC_VERDICT)
        .ok_or_else(|| AgentError::BpfUnavailable(format!("program {TC_VERDICT} missing from the object")))?
        .try_into()
        .map_err(bpf_error)?;
    verdict.load().map_err(bpf_error)?;
    let verdict_fd =
        verdict.fd().map_err(bpf_error)?.try_clone().map_err(|e| AgentError::io("dup", TC_VERDICT, e))?;
    let mut tails: ProgramArray<_> = ebpf
        .map_mut(TAILS_MAP)
        .ok_or_else(|| AgentError::BpfUnavailable(format!("map {TAILS_MAP} missing from the object")))?
        .try_into()
        .map_err(bpf_error)?;
    tails.set(0, &verdict_fd, 0).map_err(bpf_error)?;
    let mut wanted = Vec::new();
    for (program, direction) in [(TC_EGRESS, TcAttachType::Egress), (TC_INGRESS, TcAttachType::Ingress)] {
        let prog: &mut SchedClassifier = ebpf
            .program_mut(program)
            .ok_or_else(|| AgentError::BpfUnavailable(format!("program {program} missing from the object")))?
            .try_into()
            .map_err(bpf_error)?;
        prog.load().map_err(bpf_error)?;
        for iface in interfaces {
            let id = prog.attach(iface, direction).map_err(|e| {
                AgentError::BpfUnavailable(format!("attaching {program} to interface {iface}: {e}"))
            })?;
            let link: FdLink = prog.take_link(id).map_err(bpf_error)?.try_into().map_err(bpf_error)?;
            let name = tc_pin(program, iface);
            pin_replacing(link, &links, &name)?;
            wanted.push(name);
        }
    }
    for stale in read_dir_sorted(&links)? {
        let name = stale.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        if name.starts_with("rf_tc_") && !wanted.contains(&name) {
            drop(
                PinnedLink::from_pin(&stale)
                    .map_err(bpf_error)?
                    .unpin()
                    .map_err(|e| AgentError::io("unpin", &stale, e))?,
            );
            info!(link = %name, "detached packet path from an interface no longer listed");
        }
    }
    Ok(())
}

/// Detaches every pinned link and removes the pinned maps. Returns what was removed.
pub fn detach_all(bpffs: &Path) -> Result<Vec<PathBuf>, AgentError> {
    let mut removed = Vec::new();
    let links = links_dir(bpffs);
    for entry in read_dir_sorted(&links)? {
        let link = PinnedLink::from_pin(&entry).map_err(bpf_error)?;
        drop(link.unpin().map_err(|e| AgentError::io("unpin", &entry, e))?);
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
