//! The agent's system calls: safe functions on `nix`, and the one raw `bpf(2)` entry for the
//! commands aya does not offer (batch lookups in `map_batch.rs`, link pinning in
//! `bpf/raw_link.rs`).
use std::{io, mem::size_of, path::Path};

pub use nix::sys::signal::Signal;
use nix::{
    net::if_::if_nametoindex,
    sys::{signal::kill, statfs::statfs},
    unistd::{geteuid, Pid},
};

/// The filesystem type (`statfs(2)`'s `f_type`, e.g. `CGROUP2_SUPER_MAGIC`) of `path`.
pub fn fs_magic(path: &Path) -> io::Result<i64> {
    let st = statfs(path)?;
    #[allow(clippy::unnecessary_cast)]
    Ok(st.filesystem_type().0 as i64)
}

/// Whether `name` is a network interface in this process's network namespace (sysfs may show
/// another one).
pub fn interface_exists(name: &str) -> bool {
    if_nametoindex(name).is_ok()
}

/// The effective user id.
pub fn euid() -> u32 {
    geteuid().as_raw()
}

/// Sends `signal` to process `pid`.
pub fn signal(pid: i32, signal: Signal) -> io::Result<()> {
    kill(Pid::from_raw(pid), signal).map_err(io::Error::from)
}

/// `bpf(cmd, attr, sizeof(attr))`: the command's result (e.g. a new descriptor) or the error.
///
/// # Safety
/// `attr` must be the `union bpf_attr` member for `cmd`, fully initialised (zero padding), and
/// every pointer in it must point at memory valid for what the kernel reads or writes for `cmd`,
/// alive for the call.
pub unsafe fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: the caller guarantees `attr` is a valid `bpf_attr` member for `cmd`; the size
    // passed is its own.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, size_of::<T>()) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_filesystem_type_and_fails_for_a_missing_path() {
        const PROC_SUPER_MAGIC: i64 = 0x9fa0;
        assert_eq!(fs_magic(Path::new("/proc")).unwrap(), PROC_SUPER_MAGIC);
        let e = fs_magic(Path::new("/nonexistent/ringfence")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn knows_loopback_only() {
        assert!(interface_exists("lo"));
        assert!(!interface_exists("rf-no-such0"));
        assert!(!interface_exists("bad\0name"));
    }

    #[test]
    fn signals_report_errors() {
        // SIGCONT to a running process (this one) changes nothing.
        assert!(signal(std::process::id() as i32, Signal::SIGCONT).is_ok());
        let e = signal(i32::MAX, Signal::SIGTERM).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ESRCH));
    }
}
