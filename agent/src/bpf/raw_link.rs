//! A cgroup link for a program type whose aya link cannot become an `FdLink` (aya 0.14 has no
//! such conversion for `cgroup/setsockopt`): `BPF_LINK_CREATE` and `BPF_OBJ_PIN` issued here,
//! then the pin is opened as aya's `PinnedLink` so it is handled like every other link.
use std::{
    ffi::CString,
    io,
    os::{
        fd::{AsFd, AsRawFd, FromRawFd, OwnedFd},
        unix::ffi::OsStrExt,
    },
    path::Path,
};

use aya::programs::links::{FdLink, PinnedLink};

use crate::sys::bpf;

const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_LINK_CREATE: libc::c_long = 28;
/// `enum bpf_attach_type`: BPF_CGROUP_SETSOCKOPT.
pub const BPF_CGROUP_SETSOCKOPT: u32 = 22;

/// `union bpf_attr`'s `link_create` member (the part used here), padded to a safe size.
#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
    _rest: [u64; 6],
}

/// `union bpf_attr`'s `obj_pin` member.
#[repr(C)]
#[derive(Default)]
struct ObjPinAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
    path_fd: i32,
    _pad: u32,
}

/// Attaches `prog` to `cgroup` with a link of `attach_type`, returned as an aya [`FdLink`]
/// (via a transient pin at `staging`, removed again).
pub fn cgroup_link(
    prog: impl AsFd,
    cgroup: impl AsFd,
    attach_type: u32,
    staging: &Path,
) -> io::Result<FdLink> {
    let mut create = LinkCreateAttr {
        prog_fd: prog.as_fd().as_raw_fd() as u32,
        target_fd: cgroup.as_fd().as_raw_fd() as u32,
        attach_type,
        ..LinkCreateAttr::default()
    };
    // SAFETY: `create` is the fully initialised `link_create` member, without pointers.
    let fd = unsafe { bpf(BPF_LINK_CREATE, &mut create) }?;
    // SAFETY: the kernel returned a new link descriptor that nothing else owns.
    let link = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let path = CString::new(staging.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let mut pin = ObjPinAttr {
        pathname: path.as_ptr() as u64,
        bpf_fd: link.as_raw_fd() as u32,
        ..ObjPinAttr::default()
    };
    // SAFETY: `pin` is the fully initialised `obj_pin` member; `pathname` points at the
    // NUL-terminated `path`, alive for the call.
    unsafe { bpf(BPF_OBJ_PIN, &mut pin) }?;
    let pinned = PinnedLink::from_pin(staging).map_err(io::Error::other)?;
    pinned.unpin()
}
