//! The packet path: tcx egress and ingress programs on the node's uplinks.
use std::path::Path;

use aya::{
    maps::ProgramArray,
    programs::{links::FdLink, SchedClassifier, TcAttachType},
    Ebpf,
};
use ringfence_common::{TAILS_MAP, TC_EGRESS, TC_INGRESS, TC_VERDICT4, TC_VERDICT6};
use tracing::info;

use super::{
    object::{bpf_error, load_error, program},
    pins::{links_dir, pin_replacing, read_dir_sorted, unpin},
};
use crate::error::AgentError;

/// The pin name of a packet-path link.
fn tc_pin(program: &str, interface: &str) -> String {
    format!("{program}_{interface}")
}

/// Attaches the packet-path programs (tcx) to each uplink interface of this network namespace,
/// and removes packet-path links of interfaces no longer listed.
pub fn attach_packet_path(ebpf: &mut Ebpf, interfaces: &[String], bpffs: &Path) -> Result<(), AgentError> {
    let links = links_dir(bpffs);
    if interfaces.is_empty() {
        // Nothing to load (verifying the tcx programs takes seconds); only stale links to drop.
        return remove_stale(&links, &[]);
    }
    // The egress program tail-calls the verdict programs (slot 0 IPv4, 1 IPv6): load them and
    // fill the slots first.
    let mut fds = Vec::new();
    for name in [TC_VERDICT4, TC_VERDICT6] {
        let verdict: &mut SchedClassifier = program(ebpf, name)?;
        let t = std::time::Instant::now();
        verdict.load().map_err(|e| load_error(name, e))?;
        tracing::debug!(program = name, ms = t.elapsed().as_millis() as u64, "verified");
        fds.push(verdict.fd().map_err(bpf_error)?.try_clone().map_err(|e| AgentError::io("dup", name, e))?);
    }
    let mut tails: ProgramArray<_> = ebpf
        .map_mut(TAILS_MAP)
        .ok_or_else(|| AgentError::BpfUnavailable(format!("map {TAILS_MAP} missing from the object")))?
        .try_into()
        .map_err(bpf_error)?;
    for (slot, fd) in fds.iter().enumerate() {
        tails.set(slot as u32, fd, 0).map_err(bpf_error)?;
    }
    let mut wanted = Vec::new();
    for (name, direction) in [(TC_EGRESS, TcAttachType::Egress), (TC_INGRESS, TcAttachType::Ingress)] {
        let prog: &mut SchedClassifier = program(ebpf, name)?;
        prog.load().map_err(|e| load_error(name, e))?;
        for iface in interfaces {
            let id = prog.attach(iface, direction).map_err(|e| {
                AgentError::BpfUnavailable(format!("attaching {name} to interface {iface}: {e}"))
            })?;
            let link: FdLink = prog.take_link(id).map_err(bpf_error)?.try_into().map_err(bpf_error)?;
            let pin = tc_pin(name, iface);
            pin_replacing(link, &links, &pin)?;
            wanted.push(pin);
        }
    }
    remove_stale(&links, &wanted)
}

/// Detaches packet-path links of interfaces not in `wanted`.
fn remove_stale(links: &Path, wanted: &[String]) -> Result<(), AgentError> {
    for stale in read_dir_sorted(links)? {
        let name = stale.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        if name.starts_with("rf_tc_") && !wanted.contains(&name) {
            unpin(&stale)?;
            info!(link = %name, "detached packet path from an interface no longer listed");
        }
    }
    Ok(())
}
