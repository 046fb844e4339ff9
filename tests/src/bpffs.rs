//! Private bpf filesystem mount guard.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

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

fn mount_bpffs(path: &Path) -> io::Result<()> {
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("bpf"), path, Some("bpf"), flags, Some("mode=0700"))?;
    Ok(())
}

/// Unmounts `path` (lazily when busy) and removes the directory, then the
/// base directory if it became empty.
pub(crate) fn unmount_and_remove(path: &Path) {
    match umount2(path, MntFlags::empty()) {
        Ok(()) => {}
        Err(Errno::EBUSY) => {
            let _ = umount2(path, MntFlags::MNT_DETACH);
        }
        Err(Errno::EINVAL) => {}
        Err(err) => eprintln!("warning: umount {}: {err}", path.display()),
    }
    if let Err(e) = fs::remove_dir(path) {
        if e.kind() != io::ErrorKind::NotFound {
            eprintln!("warning: remove {}: {e}", path.display());
        }
    }
    let _ = fs::remove_dir(BPFFS_BASE);
}
