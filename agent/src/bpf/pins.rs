//! The pinned links under `<bpffs>/links`: listing them, replacing one without a gap, and
//! detaching everything.
use std::{
    fs,
    path::{Path, PathBuf},
};

use aya::programs::links::{FdLink, PinnedLink};
use ringfence_common::PROGRAMS;
use tracing::{debug, info};

use super::object::bpf_error;
use crate::{error::AgentError, maps::maps_dir};

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

/// Pins `link` as `<links>/<name>`, replacing (and so detaching) a link pinned there before. The
/// new link is attached first, so the old and new programs overlap instead of leaving a gap.
pub(super) fn pin_replacing(link: FdLink, links: &Path, name: &str) -> Result<(), AgentError> {
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
pub(super) fn unpin(pin: &Path) -> Result<(), AgentError> {
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

pub(super) fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>, AgentError> {
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
