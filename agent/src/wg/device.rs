//! The WireGuard device through `wireguard-control`: kernel module, or a userspace
//! implementation (boringtun-cli, wireguard-go) that the agent starts and then speaks the UAPI to.
use std::{
    io::{BufRead, BufReader, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use ipnet::IpNet;
use wireguard_control::{Backend as WgBackend, Device, DeviceUpdate, InterfaceName, Key, PeerConfigBuilder};

use super::{
    peers::Peer,
    plan::{DevicePeer, Plan},
};
use crate::sys::{self, Signal};

/// UAPI socket directory shared by every userspace implementation (and every namespace).
pub const SOCKET_DIR: &str = "/var/run/wireguard";
/// Userspace implementations looked for on PATH, in this order.
pub const USERSPACE_IMPLS: &[&str] = &["boringtun-cli", "boringtun", "wireguard-go"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Kernel,
    Userspace(PathBuf),
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::Kernel => f.write_str("kernel"),
            Backend::Userspace(p) => write!(f, "userspace ({})", p.display()),
        }
    }
}

/// Whether the kernel has WireGuard (module loaded or built in).
pub fn kernel_available() -> bool {
    Path::new("/sys/module/wireguard").exists()
}

/// The first known userspace implementation on PATH.
pub fn find_userspace() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    USERSPACE_IMPLS
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |d| d.join(name)))
        .find(|p| p.is_file())
}

pub fn socket_path(iface: &str) -> PathBuf {
    Path::new(SOCKET_DIR).join(format!("{iface}.sock"))
}

fn err(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::other(msg.into())
}

/// One WireGuard interface.
pub struct WgDevice {
    name: InterfaceName,
    iface: String,
    backend: Backend,
}

impl WgDevice {
    pub fn new(iface: &str, backend: Backend) -> std::io::Result<Self> {
        let name = iface.parse::<InterfaceName>().map_err(|e| err(e.to_string()))?;
        Ok(WgDevice { name, iface: iface.to_string(), backend })
    }

    fn wg_backend(&self) -> WgBackend {
        match self.backend {
            Backend::Kernel => WgBackend::Kernel,
            Backend::Userspace(_) => WgBackend::Userspace,
        }
    }

    /// Starts the userspace implementation unless one already serves the socket (an agent
    /// restart adopts the running device). Returns whether it was started.
    fn ensure_userspace(&self, program: &Path, log_file: &Path) -> std::io::Result<bool> {
        let sock = socket_path(&self.iface);
        if UnixStream::connect(&sock).is_ok() {
            return Ok(false);
        }
        std::fs::create_dir_all(SOCKET_DIR)?;
        let _ = std::fs::remove_file(&sock);
        // Its output goes to a file, not a pipe: the daemonized child would hold a pipe open.
        let start_log = log_file.with_extension("start.log");
        let stderr =
            std::fs::File::create(&start_log).map_err(|e| err(format!("{}: {e}", start_log.display())))?;
        let status = Command::new(program)
            .arg(&self.iface)
            .env("WG_SUDO", "true") // boringtun: do not drop privileges
            .env("WG_LOG_FILE", log_file)
            .env_remove("LOG_LEVEL") // wireguard-go hangs wireguard-control with it
            .stdin(Stdio::null())
            .stdout(stderr.try_clone()?)
            .stderr(stderr)
            .status()
            .map_err(|e| err(format!("starting {}: {e}", program.display())))?;
        if !status.success() {
            let said = std::fs::read_to_string(&start_log).unwrap_or_default();
            return Err(err(format!(
                "{} {} exited with {status}: {}",
                program.display(),
                self.iface,
                said.trim()
            )));
        }
        // It daemonizes; wait for its UAPI socket.
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(&sock).is_err() {
            if Instant::now() >= deadline {
                return Err(err(format!(
                    "{} did not open {} within 10 s (log: {})",
                    program.display(),
                    sock.display(),
                    log_file.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(true)
    }

    /// Creates the device if needed and sets the private key and listen port.
    /// Returns whether a device was created (or a userspace implementation started).
    pub fn ensure(&self, private_key: &Key, listen_port: u16, log_file: &Path) -> std::io::Result<bool> {
        let (created, port) = match &self.backend {
            Backend::Userspace(program) => {
                let created = self.ensure_userspace(program, log_file)?;
                (created, uapi_get(&self.iface, false)?.0)
            }
            Backend::Kernel => match Device::get(&self.name, WgBackend::Kernel) {
                Ok(d) => (false, d.listen_port),
                Err(_) => (true, None),
            },
        };
        let mut update = DeviceUpdate::new().set_private_key(private_key.clone());
        // Re-binding an adopted device's port would drop its peers' sockets for nothing.
        if port != Some(listen_port) {
            update = update.set_listen_port(listen_port);
        }
        update.apply(&self.name, self.wg_backend())?;
        Ok(created)
    }

    /// The peers the device has now.
    pub fn peers(&self) -> std::io::Result<Vec<DevicePeer>> {
        match self.backend {
            Backend::Userspace(_) => Ok(uapi_get(&self.iface, self.boringtun())?.1),
            Backend::Kernel => Ok(Device::get(&self.name, WgBackend::Kernel)?
                .peers
                .into_iter()
                .map(|p| DevicePeer {
                    public_key: p.config.public_key,
                    endpoint: p.config.endpoint,
                    allowed_ips: p
                        .config
                        .allowed_ips
                        .iter()
                        .filter_map(|a| IpNet::new(a.address, a.cidr).ok())
                        .collect(),
                    persistent_keepalive: p.config.persistent_keepalive_interval.filter(|&k| k > 0),
                    last_handshake: p.stats.last_handshake_time,
                })
                .collect()),
        }
    }

    /// boringtun 0.7 cannot change an existing peer (its UAPI thread panics), and within one
    /// `set` request it carries `remove`, `endpoint` and keepalive over from one peer section to
    /// the next. With it, every peer gets its own request and a changed peer is removed and
    /// added again (its session is renegotiated).
    fn boringtun(&self) -> bool {
        matches!(&self.backend, Backend::Userspace(p)
            if p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.contains("boringtun")))
    }

    /// Applies the peer part of a plan (routes are the caller's).
    pub fn apply_peers(&self, plan: &Plan) -> std::io::Result<()> {
        let backend = self.wg_backend();
        if self.boringtun() {
            for key in plan.remove.iter().chain(plan.update.iter().map(|p| &p.public_key)) {
                DeviceUpdate::new().remove_peer_by_key(key).apply(&self.name, backend)?;
            }
            for p in plan.add.iter().chain(&plan.update) {
                DeviceUpdate::new().add_peer(peer_config(p)).apply(&self.name, backend)?;
            }
            return Ok(());
        }
        if plan.remove.is_empty() && plan.add.is_empty() && plan.update.is_empty() {
            return Ok(());
        }
        let mut update = DeviceUpdate::new();
        for key in &plan.remove {
            update = update.remove_peer_by_key(key);
        }
        for p in plan.add.iter().chain(&plan.update) {
            update = update.add_peer(peer_config(p));
        }
        update.apply(&self.name, backend)
    }
}

fn peer_config(p: &Peer) -> PeerConfigBuilder {
    let mut b = PeerConfigBuilder::new(&p.public_key)
        .replace_allowed_ips()
        .set_persistent_keepalive_interval(p.persistent_keepalive.unwrap_or(0));
    if let Some(e) = p.endpoint {
        b = b.set_endpoint(e);
    }
    for net in &p.allowed_ips {
        b = b.add_allowed_ip(net.addr(), net.prefix_len());
    }
    b
}

/// A peer's last handshake from the UAPI's `last_handshake_time_sec`/`_nsec`: a Unix time, or
/// (boringtun: `since`) the time since; zero or absent is none.
fn handshake(sec: Option<u64>, nsec: Option<u32>, since: bool) -> Option<SystemTime> {
    let d = Duration::new(sec?, nsec.unwrap_or(0).min(999_999_999));
    if since {
        SystemTime::now().checked_sub(d)
    } else {
        (!d.is_zero()).then(|| UNIX_EPOCH + d)
    }
}

/// Reads the listen port and the peers over the UAPI socket (`get=1`). Done here rather than
/// with `Device::get`, which prints boringtun's extra fields to stdout. `since`: handshake times
/// are times since (boringtun), not Unix times.
fn uapi_get(iface: &str, since: bool) -> std::io::Result<(Option<u16>, Vec<DevicePeer>)> {
    let mut sock = UnixStream::connect(socket_path(iface))?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    sock.write_all(b"get=1\n\n")?;
    let mut peers: Vec<DevicePeer> = Vec::new();
    // The handshake fields of the last peer: (sec, nsec).
    let mut times: Vec<(Option<u64>, Option<u32>)> = Vec::new();
    let mut port = None;
    for line in BufReader::new(sock).lines() {
        let line = line?;
        if line.is_empty() {
            break;
        }
        let Some((k, v)) = line.split_once('=') else { continue };
        let bad = || err(format!("UAPI {iface}: bad line {line:?}"));
        match k {
            "listen_port" => port = v.parse().ok(),
            "public_key" => {
                peers.push(DevicePeer {
                    public_key: Key::from_hex(v).map_err(|_| bad())?,
                    endpoint: None,
                    allowed_ips: Vec::new(),
                    persistent_keepalive: None,
                    last_handshake: None,
                });
                times.push((None, None));
            }
            "last_handshake_time_sec" => {
                if let Some(t) = times.last_mut() {
                    t.0 = v.parse().ok();
                }
            }
            "last_handshake_time_nsec" => {
                if let Some(t) = times.last_mut() {
                    t.1 = v.parse().ok();
                }
            }
            "endpoint" => {
                if let Some(p) = peers.last_mut() {
                    p.endpoint = v.parse().ok();
                }
            }
            "allowed_ip" => {
                if let Some(p) = peers.last_mut() {
                    p.allowed_ips.push(v.parse().map_err(|_| bad())?);
                }
            }
            "persistent_keepalive_interval" => {
                if let Some(p) = peers.last_mut() {
                    p.persistent_keepalive = v.parse().ok().filter(|&k: &u16| k > 0);
                }
            }
            "errno" if v != "0" => return Err(err(format!("UAPI {iface}: errno {v}"))),
            "errno" => break,
            _ => {}
        }
    }
    for (p, (sec, nsec)) in peers.iter_mut().zip(times) {
        p.last_handshake = handshake(sec, nsec, since);
    }
    Ok((port, peers))
}

/// Pids of userspace implementations serving `iface` (their command line is `PROGRAM IFACE`).
pub fn userspace_pids(iface: &str) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
            let args: Vec<&[u8]> = cmd.split(|&b| b == 0).filter(|a| !a.is_empty()).collect();
            let prog = args.first().map(|a| Path::new(std::str::from_utf8(a).unwrap_or("")).file_name());
            let known = prog.flatten().and_then(|n| n.to_str()).is_some_and(|n| USERSPACE_IMPLS.contains(&n));
            known && args.iter().skip(1).any(|a| *a == iface.as_bytes())
        })
        .collect()
}

/// Stops the userspace implementation of `iface` (SIGTERM, then SIGKILL after 3 s) and removes
/// its socket. Returns the pids stopped.
pub fn stop_userspace(iface: &str) -> Vec<i32> {
    let pids = userspace_pids(iface);
    for &pid in &pids {
        let _ = sys::signal(pid, Signal::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while pids.iter().any(|&p| Path::new(&format!("/proc/{p}")).exists()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    for &pid in &pids {
        if Path::new(&format!("/proc/{pid}")).exists() {
            let _ = sys::signal(pid, Signal::SIGKILL);
        }
    }
    let _ = std::fs::remove_file(socket_path(iface));
    let _ = std::fs::remove_file(Path::new(SOCKET_DIR).join(format!("{iface}.name")));
    pids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_times_absolute_or_since() {
        assert_eq!(handshake(None, None, false), None);
        assert_eq!(handshake(Some(0), Some(0), false), None, "wireguard-go: 0 is never");
        assert_eq!(
            handshake(Some(1_780_000_000), Some(5), false),
            Some(UNIX_EPOCH + Duration::new(1_780_000_000, 5))
        );
        let t = handshake(Some(3), None, true).expect("boringtun: seconds since");
        let ago = SystemTime::now().duration_since(t).unwrap();
        assert!(ago >= Duration::from_secs(3) && ago < Duration::from_secs(60), "{ago:?}");
    }
}
