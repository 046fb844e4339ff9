//! Private bpf filesystem mount guard.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::util::next_id;

/// Directory under which every [`Bpffs`] is mounted.
pub const BPFFS_BASE: &str = "/run/ringfence-test";

/// A private bpf filesystem mounted at `/run/ringfence-test/<pid>-<n>`.
///
/// Use it as the agent's `--bpffs` directory so pins never touch
/// `/sys/fs/bpf`. On drop it is unmounted (lazily if busy) and the
/// directory removed.
#[derive(Debug)]
pub struct Bpffs {
    path: PathBuf,
}

impl Bpffs {
    /// Creates the directory and mounts a fresh bpffs on it. Panics on failure.
    pub fn new() -> Bpffs {
        let path = Path::new(BPFFS_BASE).join(format!("{}-{}", std::process::id(), next_id()));
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create bpffs dir {}: {e}", path.display()));
        if let Err(e) = mount_bpffs(&path) {
            let _ = fs::remove_dir(&path);
            panic!("mount -t bpf bpf {}: {e}", path.display());
        }
        Bpffs { path }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Default for Bpffs {
    fn default() -> Self {
        Bpffs::new()
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        unmount_and_remove(&self.path);
    }
}

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("path without NUL")
}

fn mount_bpffs(path: &Path) -> io::Result<()> {
    let target = cpath(path);
    let src = c"bpf";
    // SAFETY: all pointers are valid NUL-terminated strings for the call.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            src.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            c"mode=0700".as_ptr().cast(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Unmounts `path` (lazily when busy) and removes the directory, then the
/// base directory if it became empty.
pub(crate) fn unmount_and_remove(path: &Path) {
    let target = cpath(path);
    // SAFETY: valid NUL-terminated path.
    if unsafe { libc::umount2(target.as_ptr(), 0) } != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EBUSY) {
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        } else if err.raw_os_error() != Some(libc::EINVAL) {
            eprintln!("warning: umount {}: {err}", path.display());
        }
    }
    if let Err(e) = fs::remove_dir(path) {
        if e.kind() != io::ErrorKind::NotFound {
            eprintln!("warning: remove {}: {e}", path.display());
        }
    }
    let _ = fs::remove_dir(BPFFS_BASE);
}
