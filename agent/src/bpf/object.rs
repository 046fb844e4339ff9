//! The embedded eBPF object and its programs, and how bpf() failures are reported. A leaf of
//! [`super`].
use aya::Ebpf;

use crate::error::AgentError;

/// The eBPF object built from ebpf/ringfence-ebpf by build.rs.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/ringfence"));

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

/// A program of the object, as its concrete type.
pub(super) fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, AgentError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or_else(|| AgentError::BpfUnavailable(format!("program {name} missing from the object")))?
        .try_into()
        .map_err(bpf_error)
}
