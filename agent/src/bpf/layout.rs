//! Pinned maps are reused by the next agent (that is how enforcement survives a restart), so
//! they must have the layout this agent's programs were built for. A map pinned by another
//! version with another size or type would otherwise be reused as it is: at best a confusing
//! failure later (a tail-call slot past the end), at worst values read with the wrong layout.
//! Checked before anything is loaded; a mismatch stops the agent with what differs.
use std::path::Path;

use aya::maps::MapInfo;
use aya_obj::{generated::bpf_map_type::BPF_MAP_TYPE_RINGBUF, maps::PinningType, Object};

use super::object::{bpf_error, EBPF_OBJECT};
use crate::{error::AgentError, maps::maps_dir};

/// What must match between a pinned map and the object's definition of it.
#[derive(Debug, PartialEq, Eq)]
struct Layout {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "type {}, key {} B, value {} B, {} entries",
            self.map_type, self.key_size, self.value_size, self.max_entries
        )
    }
}

/// Every map the object pins by name that is already pinned under `<bpffs>/maps` with a
/// different layout; all of them at once.
pub fn check_pinned_maps(bpffs: &Path) -> Result<(), AgentError> {
    let obj = Object::parse(EBPF_OBJECT)
        .map_err(|e| AgentError::BpfUnavailable(format!("the embedded eBPF object: {e}")))?;
    let dir = maps_dir(bpffs);
    let mut problems = Vec::new();
    let mut names: Vec<_> = obj.maps.iter().filter(|(_, m)| m.pinning() == PinningType::ByName).collect();
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
        };
        let mut have = Layout {
            map_type: info.map_type().map_or(u32::MAX, |t| t as u32),
            key_size: info.key_size(),
            value_size: info.value_size(),
            max_entries: info.max_entries(),
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
