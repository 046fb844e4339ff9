//! Following the cgroup tree: an inotify watch on every directory of the tree (cgroupfs reports
//! mkdir and rmdir as IN_CREATE / IN_DELETE of a directory), turned into tree changes relative
//! to the root.
use std::{
    collections::HashMap,
    ffi::OsStr,
    io,
    os::fd::{AsFd, AsRawFd, RawFd},
    path::{Path, PathBuf},
};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use tokio::io::unix::AsyncFd;

/// The inotify instance as tokio polls it.
struct InotifyFd(Inotify);

impl AsRawFd for InotifyFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// A change of the tree (paths relative to the root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TreeEvent {
    Created(PathBuf),
    Deleted(PathBuf),
    /// Events were lost (the kernel's queue overflowed): the tree must be scanned again.
    Overflow,
}

/// Inotify watches on the directories of a cgroup tree.
pub struct CgroupWatch {
    fd: AsyncFd<InotifyFd>,
    root: PathBuf,
    by_path: HashMap<PathBuf, WatchDescriptor>,
    by_wd: HashMap<WatchDescriptor, PathBuf>,
}

impl CgroupWatch {
    pub fn new(root: &Path) -> io::Result<Self> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        // SAFETY: the InotifyFd owns the descriptor for its whole life and always returns it.
        let fd =
            unsafe { AsyncFd::register_with_interest(InotifyFd(inotify), tokio::io::Interest::READABLE) }
                .map_err(|e| e.into_parts().1)?;
        let mut w = Self { fd, root: root.to_owned(), by_path: HashMap::new(), by_wd: HashMap::new() };
        w.watch(Path::new(""));
        Ok(w)
    }

    /// Watches the directory `rel` (relative to the root), if not yet watched.
    pub fn watch(&mut self, rel: &Path) {
        if self.by_path.contains_key(rel) {
            return;
        }
        let flags = AddWatchFlags::IN_CREATE | AddWatchFlags::IN_DELETE | AddWatchFlags::IN_ONLYDIR;
        if let Ok(wd) = self.fd.get_ref().0.add_watch(&self.root.join(rel), flags) {
            self.by_path.insert(rel.to_owned(), wd);
            self.by_wd.insert(wd, rel.to_owned());
        }
    }

    /// Forgets `rel` and everything below it (the kernel drops the watches of removed
    /// directories itself).
    pub fn forget(&mut self, rel: &Path) {
        let gone: Vec<PathBuf> = self.by_path.keys().filter(|p| p.starts_with(rel)).cloned().collect();
        for p in gone {
            if let Some(wd) = self.by_path.remove(&p) {
                self.by_wd.remove(&wd);
            }
        }
    }

    /// Waits for the next changes of the tree (every event read at once).
    pub async fn changed(&mut self) -> io::Result<Vec<TreeEvent>> {
        loop {
            let mut guard = self.fd.readable().await?;
            let events = match guard.get_inner().0.read_events() {
                Ok(events) => events,
                Err(nix::errno::Errno::EAGAIN) => {
                    guard.clear_ready();
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            drop(guard);
            let mut out = Vec::new();
            for ev in events {
                if ev.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                    out.push(TreeEvent::Overflow);
                    continue;
                }
                let (Some(dir), Some(name)) = (self.by_wd.get(&ev.wd), ev.name.as_deref()) else { continue };
                let rel = dir.join(OsStr::new(name));
                if ev.mask.contains(AddWatchFlags::IN_CREATE) && ev.mask.contains(AddWatchFlags::IN_ISDIR) {
                    out.push(TreeEvent::Created(rel));
                } else if ev.mask.contains(AddWatchFlags::IN_DELETE)
                    && ev.mask.contains(AddWatchFlags::IN_ISDIR)
                {
                    out.push(TreeEvent::Deleted(rel));
                }
            }
            if !out.is_empty() {
                return Ok(out);
            }
        }
    }
}
