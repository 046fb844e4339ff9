//! Named network namespace guard.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nix::sched::{setns, CloneFlags};
use nix::unistd::{getpid, setgid, setgroups, setuid, write, Gid, Uid};

use crate::util::{next_id, render, run_checked, run_unchecked};

/// Name prefix of every namespace created by [`NetNs::new`].
pub(crate) const NETNS_PREFIX: &str = "rf-";

/// A named network namespace (`/run/netns/NAME`), deleted on drop.
///
/// Commands are run with `nsenter --net=…` (or `setns()` in a `pre_exec`
/// hook) rather than `ip netns exec`, because the latter remounts `/sys`,
/// which hides the cgroup v2 hierarchy from the command.
#[derive(Debug)]
pub struct NetNs {
    name: String,
    path: PathBuf,
}

impl NetNs {
    /// Creates `rf-<prefix>-<pid>-<counter>` with `ip netns add` and brings
    /// its `lo` up. Panics if that fails.
    pub fn new(prefix: &str) -> NetNs {
        let name = format!("{NETNS_PREFIX}{prefix}-{}-{}", std::process::id(), next_id());
        run_checked("create netns", "ip", &["netns", "add", &name]);
        let ns = NetNs { path: PathBuf::from(format!("/run/netns/{name}")), name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// The namespace name as known to `ip netns`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace file, `/run/netns/NAME`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the namespace file (for `setns(2)`).
    pub fn open(&self) -> File {
        File::open(&self.path).unwrap_or_else(|e| panic!("open netns file {}: {e}", self.path.display()))
    }

    /// Runs `args[0] args[1..]` inside the namespace via
    /// `nsenter --net=PATH --`; panics unless it exits 0. Returns its output.
    pub fn exec<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        assert!(!args.is_empty(), "NetNs::exec needs a program");
        run_checked(&format!("exec in netns {}", self.name), "nsenter", &self.nsenter_args(args))
    }

    /// Like [`NetNs::exec`] but returns the output whatever the exit status.
    pub fn exec_unchecked<S: AsRef<OsStr>>(&self, args: &[S]) -> Output {
        assert!(!args.is_empty(), "NetNs::exec_unchecked needs a program");
        run_unchecked(&format!("exec in netns {}", self.name), "nsenter", &self.nsenter_args(args))
    }

    /// Runs `ip -n NAME args…`; panics unless it exits 0.
    pub fn ip(&self, args: &[&str]) -> Output {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run_checked(&format!("ip in netns {}", self.name), "ip", &full)
    }

    /// Sets a sysctl inside the namespace (e.g. `net.ipv6.conf.all.accept_dad`).
    pub fn sysctl(&self, key: &str, value: &str) {
        self.exec(&["sysctl", "-q", "-w", &format!("{key}={value}")]);
    }

    /// A [`Command`] for `program` whose child `setns()`es into this
    /// namespace before exec (mount namespace untouched, so `/sys` is intact).
    pub fn command<S: AsRef<OsStr>>(&self, program: S) -> Command {
        let mut cmd = Command::new(program);
        place_command(&mut cmd, Some(self.open()), None);
        cmd
    }

    fn nsenter_args<S: AsRef<OsStr>>(&self, args: &[S]) -> Vec<String> {
        let mut v = vec![format!("--net={}", self.path.display()), "--".to_string()];
        v.extend(args.iter().map(|a| a.as_ref().to_string_lossy().into_owned()));
        v
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let out = run_unchecked("delete netns", "ip", &["netns", "del", &self.name]);
        if !out.status.success() && self.path.exists() {
            eprintln!(
                "warning: `{}` failed: {}",
                render("ip", &["netns", "del", &self.name]),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
}

/// Installs a `pre_exec` hook on `cmd` that, in the forked child and before
/// exec, (a) writes the child's pid to `cgroup_procs` (an open
/// `cgroup.procs` file) and then (b) `setns()`es into `netns`. Descriptors the
/// test inherited above stderr (e.g. the `flock` lock the privileged tests are
/// serialized with) are not passed on: a server or daemon left behind by a
/// killed test must not hold that lock.
///
/// Both files are opened by the caller before fork; the hook only uses
/// async-signal-safe calls (`getpid`, `write`, `setns`). The files stay open
/// (close-on-exec) as long as `cmd` lives.
pub(crate) fn place_command(cmd: &mut Command, netns: Option<File>, cgroup_procs: Option<File>) {
    place_command_as(cmd, netns, cgroup_procs, None);
}

/// Like [`place_command`], then (c) drops to `uid` (same gid, no supplementary groups) once the
/// privileged steps are done: an unprivileged workload in the namespace and cgroup.
pub(crate) fn place_command_as(
    cmd: &mut Command,
    netns: Option<File>,
    cgroup_procs: Option<File>,
    uid: Option<u32>,
) {
    let hook = move || -> io::Result<()> {
        if let Some(procs) = &cgroup_procs {
            let mut buf = [0u8; 20];
            let digits = format_pid(getpid().as_raw(), &mut buf);
            write(procs, digits)?;
        }
        if let Some(ns) = &netns {
            setns(ns, CloneFlags::CLONE_NEWNET)?;
        }
        // Close-on-exec for everything above stderr (the hook's own files are
        // close-on-exec already). Best effort: close_range() is Linux 5.11+.
        // SAFETY: a raw system call on no memory.
        unsafe {
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC);
        }
        if let Some(uid) = uid {
            setgroups(&[])?;
            setgid(Gid::from_raw(uid))?;
            setuid(Uid::from_raw(uid))?;
        }
        Ok(())
    };
    // SAFETY: the hook allocates nothing and only makes async-signal-safe
    // system calls (nix's thin wrappers) on file descriptors opened before fork.
    unsafe {
        cmd.pre_exec(hook);
    }
}

/// Formats a pid in decimal into `buf` without allocating.
fn format_pid(pid: libc::pid_t, buf: &mut [u8; 20]) -> &[u8] {
    let mut v = pid.unsigned_abs();
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    #[test]
    fn format_pid_digits() {
        let mut b = [0u8; 20];
        assert_eq!(super::format_pid(0, &mut b), b"0");
        assert_eq!(super::format_pid(4194304, &mut b), b"4194304");
    }
}
