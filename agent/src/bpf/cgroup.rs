//! The enforced cgroup's programs. Every program is loaded (verified by the kernel), the
//! backstop's tail-call slots are filled and the packet-socket guard is proven (or found
//! missing) before the first one is attached; then they are attached in [`PROGRAMS`] order: the
//! passive-open marker, the packet backstop (from this moment every IP packet of the cgroup is
//! decided), the socket guards, the connect/sendmsg hooks. The maps hold the policy before any
//! of this (the caller applies it first), so the cgroup is never enforced by some hooks under an
//! empty policy.
use std::{fs::File, os::fd::AsFd, path::Path};

use aya::{
    maps::{CgroupArray, ProgramArray},
    programs::{
        links::FdLink, CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSock, CgroupSockAddr,
        CgroupSockopt, LsmCgroup,
    },
    Btf, Ebpf,
};
use ringfence_common::{
    CGROUP_MAP, PROGRAMS, RETIRED_PROGRAMS, SETSOCKOPT, SKB_BUDGET, SKB_EGRESS, SKB_INGRESS, SKB_PARSE,
    SKB_TAILS_MAP, SKB_TAIL_BUDGET, SKB_TAIL_PARSE, SKB_TAIL_VERDICT4, SKB_TAIL_VERDICT6, SKB_VERDICT4,
    SKB_VERDICT6, SOCKET_CREATE, SOCK_ADDR_PROGRAMS, SOCK_CREATE,
};
use tracing::{debug, info, warn};

use super::{
    object::{bpf_error, load_error, program},
    pins::{links_dir, pin_replacing, unpin},
    selfcheck::{self, SocketGuard},
};
use crate::error::AgentError;

/// How packet (AF_PACKET) and XDP sockets of the enforced cgroup are handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketSockets {
    /// Refused at creation (BPF LSM).
    Refused,
    /// Created, but their frames cannot skip the qdisc and are decided on the packet path.
    PacketPath,
    /// Not policed (no BPF LSM, no packet path, `--allow-weaker-isolation`).
    Unpoliced,
}

impl PacketSockets {
    pub fn as_str(self) -> &'static str {
        match self {
            PacketSockets::Refused => "refused",
            PacketSockets::PacketPath => "decided on the packet path",
            PacketSockets::Unpoliced => "NOT policed",
        }
    }
}

/// What `attach_all` attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hooks {
    pub packet_sockets: PacketSockets,
    /// CLOCK_MONOTONIC (ns) once the backstop was attached: from then on every IP packet of the
    /// cgroup is decided.
    pub backstop_attached_ns: u64,
}

/// The kernel hook the packet-socket guard attaches to.
const SOCKET_CREATE_HOOK: &str = "socket_create";

/// Loads every program; returns why the packet-socket guard could not be loaded, if so.
fn load_all(ebpf: &mut Ebpf) -> Result<Option<String>, AgentError> {
    let started = std::time::Instant::now();
    let timed = |name: &str, t: std::time::Instant| {
        debug!(program = name, ms = t.elapsed().as_millis() as u64, "verified")
    };
    for name in [SKB_EGRESS, SKB_BUDGET, SKB_INGRESS, SKB_PARSE, SKB_VERDICT4, SKB_VERDICT6] {
        let t = std::time::Instant::now();
        program::<CgroupSkb>(ebpf, name)?.load().map_err(|e| load_error(name, e))?;
        timed(name, t);
    }
    program::<CgroupSock>(ebpf, SOCK_CREATE)?.load().map_err(|e| load_error(SOCK_CREATE, e))?;
    program::<CgroupSockopt>(ebpf, SETSOCKOPT)?.load().map_err(|e| load_error(SETSOCKOPT, e))?;
    for name in SOCK_ADDR_PROGRAMS {
        let t = std::time::Instant::now();
        program::<CgroupSockAddr>(ebpf, name)?.load().map_err(|e| load_error(name, e))?;
        timed(name, t);
    }
    info!(ms = started.elapsed().as_millis() as u64, "cgroup programs loaded and verified");
    // The guard needs the kernel's BTF and per-cgroup BPF LSM (Linux >= 6.0).
    let loaded = Btf::from_sys_fs()
        .map_err(|e| format!("kernel BTF (/sys/kernel/btf/vmlinux): {e}"))
        .and_then(|btf| {
            program::<LsmCgroup>(ebpf, SOCKET_CREATE)
                .map_err(|e| e.to_string())?
                .load(SOCKET_CREATE_HOOK, &btf)
                .map_err(|e| match bpf_error(e) {
                    AgentError::BpfUnavailable(why) => why,
                    other => other.to_string(),
                })
        });
    Ok(loaded.err())
}

fn fill_tails(ebpf: &mut Ebpf) -> Result<(), AgentError> {
    let fds = [
        (SKB_TAIL_VERDICT4, SKB_VERDICT4),
        (SKB_TAIL_PARSE, SKB_PARSE),
        (SKB_TAIL_VERDICT6, SKB_VERDICT6),
        (SKB_TAIL_BUDGET, SKB_BUDGET),
    ]
    .map(|(slot, name)| -> Result<_, AgentError> {
        let fd = program::<CgroupSkb>(ebpf, name)?.fd().map_err(bpf_error)?;
        Ok((slot, fd.try_clone().map_err(|e| AgentError::io("dup", name, e))?))
    });
    let mut tails: ProgramArray<_> = ebpf
        .map_mut(SKB_TAILS_MAP)
        .ok_or_else(|| AgentError::BpfUnavailable(format!("map {SKB_TAILS_MAP} missing from the object")))?
        .try_into()
        .map_err(bpf_error)?;
    for entry in fds {
        let (slot, fd) = entry?;
        tails.set(slot, &fd, 0).map_err(bpf_error)?;
    }
    Ok(())
}

/// Attaches one loaded program to the cgroup and pins its link.
fn attach_one(ebpf: &mut Ebpf, name: &str, cg: &File, links: &Path) -> Result<(), AgentError> {
    // With bpf_link_create (kernel >= 5.7) cgroup links are always multi-attach and the kernel
    // rejects any attach flag, so the mode must be the default (no flags).
    let mode = CgroupAttachMode::Single;
    let link: FdLink = match name {
        SKB_EGRESS | SKB_INGRESS => {
            let p = program::<CgroupSkb>(ebpf, name)?;
            let dir =
                if name == SKB_INGRESS { CgroupSkbAttachType::Ingress } else { CgroupSkbAttachType::Egress };
            let id = p.attach(cg.as_fd(), dir, mode).map_err(bpf_error)?;
            p.take_link(id).map_err(bpf_error)?.try_into().map_err(bpf_error)?
        }
        SOCK_CREATE => {
            let p = program::<CgroupSock>(ebpf, name)?;
            let id = p.attach(cg.as_fd(), mode).map_err(bpf_error)?;
            p.take_link(id).map_err(bpf_error)?.try_into().map_err(bpf_error)?
        }
        SETSOCKOPT => {
            let p = program::<CgroupSockopt>(ebpf, name)?;
            let staging = links.join(format!("{name}_raw"));
            let _ = std::fs::remove_file(&staging);
            super::raw_link::cgroup_link(
                p.fd().map_err(bpf_error)?,
                cg.as_fd(),
                super::raw_link::BPF_CGROUP_SETSOCKOPT,
                &staging,
            )
            .map_err(|e| AgentError::BpfUnavailable(format!("attaching {name}: {e}")))?
        }
        SOCKET_CREATE => {
            let p = program::<LsmCgroup>(ebpf, name)?;
            let id = p.attach(cg.as_fd()).map_err(bpf_error)?;
            p.take_link(id).map_err(bpf_error)?.into()
        }
        _ => {
            let p = program::<CgroupSockAddr>(ebpf, name)?;
            let id = p.attach(cg.as_fd(), mode).map_err(bpf_error)?;
            p.take_link(id).map_err(bpf_error)?.try_into().map_err(bpf_error)?
        }
    };
    pin_replacing(link, links, name)
}

/// What isolation the agent may start with (see [`decide`]).
#[derive(Debug, Clone, Copy)]
pub struct Isolation {
    /// The packet path runs on the uplinks (`--interface`).
    pub packet_path: bool,
    /// `--allow-weaker-isolation`.
    pub allow_weaker: bool,
}

/// How packet sockets will be handled, or why the agent must not start: never silently weaker.
pub fn decide(guard: &SocketGuard, iso: Isolation) -> Result<PacketSockets, String> {
    match guard {
        SocketGuard::Verified => Ok(PacketSockets::Refused),
        SocketGuard::Unavailable(_) if iso.packet_path => Ok(PacketSockets::PacketPath),
        SocketGuard::Unavailable(_) if iso.allow_weaker => Ok(PacketSockets::Unpoliced),
        SocketGuard::Unavailable(why) => Err(selfcheck::refusal(why)),
    }
}

/// Loads every cgroup program, proves the packet-socket guard works, decides whether the agent
/// may enforce without it ([`decide`]), then attaches everything to `cgroup`, replacing
/// previously pinned links; records the cgroup for the packet path.
pub fn attach_all(ebpf: &mut Ebpf, cgroup: &Path, bpffs: &Path, iso: Isolation) -> Result<Hooks, AgentError> {
    let cg = File::open(cgroup).map_err(|e| AgentError::io("open cgroup", cgroup, e))?;
    let load_error = load_all(ebpf)?;
    fill_tails(ebpf)?;
    let guard = match load_error {
        Some(e) => SocketGuard::Unavailable(e),
        None => selfcheck::verify(ebpf, cgroup, bpffs)?,
    };
    let packet_sockets = decide(&guard, iso).map_err(AgentError::BpfUnavailable)?;
    match (&guard, packet_sockets) {
        (SocketGuard::Unavailable(why), PacketSockets::PacketPath) => info!(reason = %why,
            "packet sockets cannot be refused on this kernel; their frames are decided on the packet path and cannot bypass it"),
        (SocketGuard::Unavailable(why), _) => warn!(reason = %why,
            "packet and XDP sockets of the enforced cgroup are NOT policed (--allow-weaker-isolation without --interface)"),
        _ => {}
    }
    let mut cgroups: CgroupArray<_> = ebpf
        .map_mut(CGROUP_MAP)
        .ok_or_else(|| AgentError::BpfUnavailable(format!("map {CGROUP_MAP} missing from the object")))?
        .try_into()
        .map_err(bpf_error)?;
    cgroups.set(0, std::os::fd::AsRawFd::as_raw_fd(&cg), 0).map_err(bpf_error)?;
    let links = links_dir(bpffs);
    let mut backstop_attached_ns = 0;
    for name in PROGRAMS {
        if name == SOCKET_CREATE && packet_sockets != PacketSockets::Refused {
            continue;
        }
        attach_one(ebpf, name, &cg, &links)?;
        if name == SKB_EGRESS {
            backstop_attached_ns = crate::clock::monotonic_ns();
        }
    }
    for name in RETIRED_PROGRAMS {
        let pin = links.join(name);
        if pin.exists() {
            unpin(&pin)?;
            info!(link = name, "detached a link an earlier version attached");
        }
    }
    Ok(Hooks { packet_sockets, backstop_attached_ns })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_silently_weaker() {
        let missing = SocketGuard::Unavailable("no BPF LSM".into());
        let iso = |packet_path, allow_weaker| Isolation { packet_path, allow_weaker };
        assert_eq!(decide(&SocketGuard::Verified, iso(false, false)), Ok(PacketSockets::Refused));
        assert_eq!(decide(&missing, iso(true, false)), Ok(PacketSockets::PacketPath));
        assert_eq!(decide(&missing, iso(false, true)), Ok(PacketSockets::Unpoliced));
        let err = decide(&missing, iso(false, false)).unwrap_err();
        assert!(err.contains("no BPF LSM") && err.contains("--allow-weaker-isolation"), "{err}");
        assert!(err.contains("--interface"), "{err}");
    }
}
