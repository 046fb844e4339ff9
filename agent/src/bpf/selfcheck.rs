//! Proving that the kernel runs the packet-socket guard (BPF LSM) before relying on it. Kernels
//! differ: without `CONFIG_BPF_LSM`, or with lockdown, loading is refused; with `CONFIG_BPF_LSM`
//! but `bpf` not among the active LSMs, the program loads and is never called, and would
//! silently do nothing. So the agent attaches it to a throwaway child cgroup of the enforced
//! one, creates a socket from a process in that child (`ringfence-agent probe-socket`), and
//! checks that the guard counted it.
use std::{
    fs::{self, File, OpenOptions},
    io::Write,
    os::{fd::AsFd, unix::process::CommandExt},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use aya::{programs::LsmCgroup, Ebpf};
use ringfence_common::SOCKET_CREATE;
use tracing::{debug, info};

use super::object::{bpf_error, program};
use crate::{error::AgentError, maps::PinnedMaps};

/// The hidden subcommand the self-check runs inside the throwaway cgroup.
pub const PROBE_SOCKET_COMMAND: &str = "probe-socket";
/// How long the probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether the packet-socket guard can be relied on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SocketGuard {
    Verified,
    /// Why not.
    Unavailable(String),
}

/// The error when the guard is unavailable and nothing else covers packet sockets.
pub fn refusal(why: &str) -> String {
    format!(
        "packet sockets of the enforced cgroup cannot be refused on this kernel: {why}. Refusing them needs a kernel \
         that runs BPF LSM programs (Linux >= 6.0, CONFIG_BPF_LSM=y, \"bpf\" among the active LSMs in CONFIG_LSM or \
         the lsm= boot parameter, no lockdown rejecting them). Without that, a workload with CAP_NET_RAW could send \
         frames that neither the connect hooks nor the cgroup backstop see. Run with --interface on the node's uplinks \
         (the packet path then decides those frames, and they cannot bypass it), or start with \
         --allow-weaker-isolation to enforce without covering packet sockets"
    )
}

/// `ringfence-agent probe-socket`: creates one socket, for the self-check to count.
pub fn probe_socket() -> Result<(), AgentError> {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .map(drop)
        .map_err(|e| AgentError::io("create socket", "probe", e))
}

/// Removes the throwaway cgroup when the check ends, however it ends.
pub struct Throwaway(pub PathBuf);

impl Drop for Throwaway {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir(&self.0) {
            debug!(error = %e, dir = %self.0.display(), "removing the self-check cgroup");
        }
    }
}

/// Runs the probe inside `dir` (a cgroup) and waits for it.
fn run_probe(dir: &Path) -> Result<bool, String> {
    let procs = OpenOptions::new().write(true).open(dir.join("cgroup.procs")).map_err(|e| e.to_string())?;
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg(PROBE_SOCKET_COMMAND).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    // SAFETY: between fork and exec the child only writes to a descriptor opened before the fork
    // (async-signal-safe), moving itself into the throwaway cgroup.
    unsafe {
        cmd.pre_exec(move || (&procs).write_all(b"0"));
    }
    let mut child = cmd.spawn().map_err(|e| format!("starting the probe: {e}"))?;
    let deadline = Instant::now() + PROBE_TIMEOUT;
    loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(status) => return Ok(status.success()),
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("the probe did not finish within {PROBE_TIMEOUT:?}"));
            }
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// Attaches the (loaded) socket guard to a throwaway child cgroup of `cgroup` and checks that
/// a socket created there is seen by it.
pub fn verify(ebpf: &mut Ebpf, cgroup: &Path, bpffs: &Path) -> Result<SocketGuard, AgentError> {
    let dir = cgroup.join(format!("ringfence-selfcheck-{}", std::process::id()));
    if dir.exists() {
        let _ = fs::remove_dir(&dir);
    }
    fs::create_dir(&dir).map_err(|e| AgentError::io("create self-check cgroup", &dir, e))?;
    let throwaway = Throwaway(dir.clone());
    let cg = File::open(&dir).map_err(|e| AgentError::io("open self-check cgroup", &dir, e))?;
    let maps = PinnedMaps::open(bpffs)?;
    let prog = program::<LsmCgroup>(ebpf, SOCKET_CREATE)?;
    let link = match prog.attach(cg.as_fd()) {
        Ok(link) => link,
        Err(e) => return Ok(SocketGuard::Unavailable(bpf_error(e).to_string())),
    };
    let before = maps.stats()?.socket_guard_seen;
    let probe = run_probe(&dir);
    let after = maps.stats()?.socket_guard_seen;
    prog.detach(link).map_err(bpf_error)?;
    drop(throwaway);
    match probe {
        Err(e) => Ok(SocketGuard::Unavailable(e)),
        Ok(false) => Ok(SocketGuard::Unavailable("the probe could not create a socket".into())),
        Ok(true) if after > before => {
            info!("packet-socket guard verified: the kernel runs the BPF LSM program");
            Ok(SocketGuard::Verified)
        }
        Ok(true) => Ok(SocketGuard::Unavailable(
            "the kernel accepted the BPF LSM program but did not run it for a new socket".into(),
        )),
    }
}
