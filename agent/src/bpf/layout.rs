//! Pinned maps are reused by the next agent (that is how enforcement survives a restart), so
//! they must have the layout this agent's programs were built for. A map pinned by another
//! version with another size or type would otherwise be reused as it is: at best a confusing
//! failure later (a tail-call slot past the end), at worst values read with the wrong layout.
//! Checked before anything is loaded; a mismatch stops the agent with what differs. One
//! exception: the socket storage of an earlier version without `BPF_F_CLONE` is replaced
//! ([`replace_unclonable_skcache`]).
use std::{fs, path::Path};

use aya::maps::{MapInfo, MapType};
use aya_obj::{generated::bpf_map_type::BPF_MAP_TYPE_RINGBUF, maps::PinningType, Object};
use ringfence_common::{BPF_F_CLONE, SKCACHE_FLAGS, SKCACHE_MAP};
use tracing::warn;

use super::object::{bpf_error, EBPF_OBJECT};
use crate::{error::AgentError, maps::maps_dir};

/// What must match between a pinned map and the object's definition of it.
#[derive(Debug, PartialEq, Eq)]
struct Layout {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "type {}, key {} B, value {} B, {} entries, flags {:#x}",
            self.map_type, self.key_size, self.value_size, self.max_entries, self.map_flags
        )
    }
}

/// Every map the object pins by name (and the socket storage, pinned by path) that is already
/// pinned under `<bpffs>/maps` with a different layout; all of them at once.
pub fn check_pinned_maps(bpffs: &Path) -> Result<(), AgentError> {
    let obj = Object::parse(EBPF_OBJECT)
        .map_err(|e| AgentError::BpfUnavailable(format!("the embedded eBPF object: {e}")))?;
    let dir = maps_dir(bpffs);
    let mut problems = Vec::new();
    let mut names: Vec<_> = obj
        .maps
        .iter()
        .filter(|(name, m)| m.pinning() == PinningType::ByName || name.as_str() == SKCACHE_MAP)
        .collect();
    names.sort_by(|a, b| a.0.cmp(b.0));
    for (name, map) in names {
        let pin = dir.join(name);
        if !pin.exists() {
            continue;
        }
        let info = MapInfo::from_pin(&pin).map_err(bpf_error)?;
        let want = Layout {
            map_type: map.map_type(),
            key_size: map.key_size(),
            value_size: map.value_size(),
            max_entries: map.max_entries(),
            map_flags: map.map_flags(),
        };
        let mut have = Layout {
            map_type: info.map_type().map_or(u32::MAX, |t| t as u32),
            key_size: info.key_size(),
            value_size: info.value_size(),
            max_entries: info.max_entries(),
            map_flags: info.map_flags(),
        };
        // aya sizes a ring buffer to whole pages and gives it no value size when it creates it:
        // its type is what must match.
        if want.map_type == BPF_MAP_TYPE_RINGBUF as u32 && have.map_type == want.map_type {
            (have.key_size, have.value_size, have.max_entries) =
                (want.key_size, want.value_size, want.max_entries);
        }
        if have != want {
            problems.push(format!("{name} at {}: pinned {have}; this agent needs {want}", pin.display()));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(AgentError::PinnedLayout { dir, problems })
    }
}

/// Removes a pinned socket storage that lacks `BPF_F_CLONE` (pinned by a version that marked
/// accepted sockets from sockops): this version's programs create and pin their own. Only its
/// marks are lost: connections accepted before the upgrade meet the egress policy for the rest
/// of their life (the safe direction). The adopted programs keep the old map until they are
/// replaced, so nothing is left unenforced meanwhile.
pub fn replace_unclonable_skcache(bpffs: &Path) -> Result<(), AgentError> {
    let pin = maps_dir(bpffs).join(SKCACHE_MAP);
    if !pin.exists() {
        return Ok(());
    }
    let info = MapInfo::from_pin(&pin).map_err(bpf_error)?;
    let flags = info.map_flags();
    if !matches!(info.map_type(), Ok(MapType::SkStorage)) || flags != SKCACHE_FLAGS & !BPF_F_CLONE {
        // This version's map, or something the layout check reports.
        return Ok(());
    }
    fs::remove_file(&pin).map_err(|e| AgentError::io("remove", &pin, e))?;
    warn!(
        map = %pin.display(), flags,
        "replaced an earlier version's socket storage (no BPF_F_CLONE): connections accepted before this upgrade are decided by the egress policy until they close"
    );
    Ok(())
}
