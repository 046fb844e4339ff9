//! Waking up when the cgroup tree changes: an inotify watch on every directory of the tree
//! (cgroupfs reports mkdir and rmdir as IN_CREATE / IN_DELETE of a directory).
use std::{
    collections::HashMap,
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

/// Inotify watches on the directories of a cgroup tree.
pub struct CgroupWatch {
    fd: AsyncFd<InotifyFd>,
    watched: HashMap<PathBuf, WatchDescriptor>,
}

impl CgroupWatch {
    pub fn new() -> io::Result<Self> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        // SAFETY: the InotifyFd owns the descriptor for its whole life and always returns it.
        let fd =
            unsafe { AsyncFd::register_with_interest(InotifyFd(inotify), tokio::io::Interest::READABLE) }
                .map_err(|e| e.into_parts().1)?;
        Ok(Self { fd, watched: HashMap::new() })
    }

    /// Watches `root` and every directory in `dirs` (relative to it); forgets directories that
    /// are gone (the kernel drops their watches itself).
    pub fn watch_tree(&mut self, root: &Path, dirs: &[PathBuf]) {
        let flags = AddWatchFlags::IN_CREATE | AddWatchFlags::IN_DELETE | AddWatchFlags::IN_ONLYDIR;
        let wanted: Vec<PathBuf> = std::iter::once(PathBuf::new()).chain(dirs.iter().cloned()).collect();
        self.watched.retain(|p, _| wanted.contains(p));
        for rel in wanted {
            if self.watched.contains_key(&rel) {
                continue;
            }
            if let Ok(wd) = self.fd.get_ref().0.add_watch(&root.join(&rel), flags) {
                self.watched.insert(rel, wd);
            }
        }
    }

    /// Waits for the next change in the tree (any number of events read at once).
    pub async fn changed(&mut self) -> io::Result<()> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.get_inner().0.read_events() {
                Ok(events) if !events.is_empty() => return Ok(()),
                Ok(_) | Err(nix::errno::Errno::EAGAIN) => guard.clear_ready(),
                Err(e) => return Err(e.into()),
            }
        }
    }
}
