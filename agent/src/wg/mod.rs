//! WireGuard mesh: the agent owns one interface, keeps its key in the state directory, sets its
//! addresses, MTU, link state and routes, and reconciles its peers with a peer list (today a
//! file) without tearing it down. Stopping the agent leaves the interface up.
pub mod device;
pub mod keys;
pub mod link;
pub mod peers;
pub mod plan;

use std::path::{Path, PathBuf};

use ipnet::IpNet;
use tracing::{error, info};
use wireguard_control::InterfaceName;

use crate::{
    config::{WgBackendChoice, WgConfig},
    error::AgentError,
    watch::FileWatch,
};
use device::{Backend, WgDevice};
use link::Netlink;
use peers::Peer;

/// Default state directory (private key, userspace implementation log).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/ringfence";
pub const DEFAULT_LISTEN_PORT: u16 = 51820;
/// Fits a 1500-byte underlay with IPv6 outer headers (1500 - 80).
pub const DEFAULT_MTU: u32 = 1420;

/// WireGuard flags after validation.
#[derive(Debug)]
pub struct Validated {
    pub cfg: WgConfig,
    pub addresses: Vec<IpNet>,
    pub backend: Backend,
    pub peers: Vec<Peer>,
}

fn resolve_backend(cfg: &WgConfig) -> Result<Backend, String> {
    let userspace = || {
        match &cfg.userspace_impl {
        Some(p) if p.is_file() => Ok(Backend::Userspace(p.clone())),
        Some(p) => Err(format!("--wg-userspace-impl {}: no such file", p.display())),
        None => device::find_userspace().map(Backend::Userspace).ok_or_else(|| {
            format!(
                "no userspace WireGuard implementation on PATH (looked for {}); install one (cargo install boringtun-cli) or give --wg-userspace-impl",
                device::USERSPACE_IMPLS.join(", ")
            )
        }),
    }
    };
    let tun = || {
        if Path::new("/dev/net/tun").exists() {
            Ok(())
        } else {
            Err("userspace WireGuard needs /dev/net/tun (modprobe tun)".to_string())
        }
    };
    match cfg.backend {
        WgBackendChoice::Kernel if device::kernel_available() => Ok(Backend::Kernel),
        WgBackendChoice::Kernel => {
            Err("--wg-backend kernel: the wireguard kernel module is not loaded (modprobe wireguard), or use --wg-backend userspace".into())
        }
        WgBackendChoice::Auto if device::kernel_available() && cfg.userspace_impl.is_none() => Ok(Backend::Kernel),
        WgBackendChoice::Auto | WgBackendChoice::Userspace => tun().and_then(|()| userspace()),
    }
}

/// Checks every WireGuard flag and file before anything is touched; all problems at once.
pub fn check(cfg: &WgConfig) -> Result<Validated, Vec<String>> {
    let mut errors = Vec::new();
    if let Err(e) = cfg.interface.parse::<InterfaceName>() {
        errors.push(format!("--wg-interface {:?}: {e}", cfg.interface));
    } else if cfg.interface.contains('/') || cfg.interface.chars().any(char::is_whitespace) {
        errors.push(format!("--wg-interface {:?}: not a valid interface name", cfg.interface));
    }
    let mut addresses = Vec::new();
    for a in &cfg.addresses {
        match a.parse::<IpNet>() {
            Ok(net) => addresses.push(net),
            Err(_) => {
                errors.push(format!("--wg-address {a:?}: expected ADDRESS/PREFIX (e.g. 198.51.100.1/32)"))
            }
        }
    }
    if cfg.addresses.is_empty() {
        errors.push("--wg-interface needs at least one --wg-address (the node's tunnel address)".into());
    }
    if cfg.listen_port == 0 {
        errors.push("--wg-listen-port 0: give a port (default 51820)".into());
    }
    let backend = resolve_backend(cfg).map_err(|e| errors.push(e)).ok();
    if let Err(e) = keys::check(&cfg.state_dir) {
        errors.push(e);
    }
    let peers = match &cfg.peers_file {
        None => Vec::new(),
        Some(path) => peers::load(path).unwrap_or_else(|e| {
            errors.extend(e);
            Vec::new()
        }),
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Validated { cfg: cfg.clone(), addresses, backend: backend.expect("no errors"), peers })
}

fn wg_err(iface: &str, e: impl std::fmt::Display) -> AgentError {
    AgentError::io("WireGuard interface", iface, std::io::Error::other(e.to_string()))
}

/// The running mesh: device, netlink, the interface index and the peers file watch.
pub struct Mesh {
    cfg: WgConfig,
    device: WgDevice,
    netlink: Netlink,
    index: u32,
    watch: Option<FileWatch>,
    /// Endpoints of the peers in force, and whether they changed since last taken.
    endpoints: Vec<std::net::SocketAddr>,
    endpoints_changed: bool,
}

impl Mesh {
    /// Brings the interface up (adopting an existing one) and applies the peers.
    pub async fn start(v: Validated) -> Result<Mesh, AgentError> {
        let iface = v.cfg.interface.clone();
        let (key, generated) = keys::load_or_create(&v.cfg.state_dir).map_err(|e| wg_err(&iface, e))?;
        if generated {
            info!(path = %keys::key_path(&v.cfg.state_dir).display(), "generated WireGuard private key");
        }
        let device = WgDevice::new(&iface, v.backend.clone()).map_err(|e| wg_err(&iface, e))?;
        let log_file = v.cfg.state_dir.join(format!("{iface}.log"));
        let created = device.ensure(&key, v.cfg.listen_port, &log_file).map_err(|e| wg_err(&iface, e))?;
        let netlink = Netlink::connect().map_err(|e| wg_err(&iface, e))?;
        let index = netlink
            .index(&iface)
            .await
            .map_err(|e| wg_err(&iface, e))?
            .ok_or_else(|| wg_err(&iface, "the device was configured but no such link exists in this network namespace (is the name used in another one?)"))?;
        netlink.up(index, v.cfg.mtu).await.map_err(|e| wg_err(&iface, e))?;
        let (added, removed) =
            netlink.sync_addresses(index, &v.addresses).await.map_err(|e| wg_err(&iface, e))?;
        info!(
            interface = %iface, ifindex = index, created, backend = %v.backend, listen_port = v.cfg.listen_port,
            mtu = v.cfg.mtu, public_key = %key.get_public().to_base64(),
            addresses_added = ?added.iter().map(ToString::to_string).collect::<Vec<_>>(),
            addresses_removed = ?removed.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "wireguard up"
        );
        let watch = v.cfg.peers_file.as_deref().map(FileWatch::new);
        // Read again after the watch took its snapshot, so no edit since preflight is missed.
        let peers = match &v.cfg.peers_file {
            Some(path) => peers::load(path).unwrap_or(v.peers),
            None => v.peers,
        };
        let mut mesh = Mesh {
            watch,
            cfg: v.cfg,
            device,
            netlink,
            index,
            endpoints: Vec::new(),
            endpoints_changed: false,
        };
        mesh.reconcile(&peers, "start").await.map_err(|e| wg_err(&iface, format!("{e:#}")))?;
        Ok(mesh)
    }

    pub fn interface(&self) -> &str {
        &self.cfg.interface
    }

    /// The peer endpoints in force if they changed since the last call: the packet path lets
    /// must-encrypt traffic out only as WireGuard UDP to these.
    pub fn take_changed_endpoints(&mut self) -> Option<Vec<std::net::SocketAddr>> {
        std::mem::take(&mut self.endpoints_changed).then(|| self.endpoints.clone())
    }

    /// Makes the device's peers and the interface's routes match `peers`.
    pub async fn reconcile(&mut self, peers: &[Peer], trigger: &str) -> anyhow::Result<()> {
        use anyhow::Context;
        let current = self.device.peers().context("reading the device's peers")?;
        let routes = self.netlink.own_routes(self.index).await.context("listing routes")?;
        let plan = plan::plan(peers, &current, &routes);
        self.device.apply_peers(&plan).context("configuring peers on the device")?;
        for net in &plan.routes_del {
            self.netlink
                .del_route(self.index, *net)
                .await
                .with_context(|| format!("deleting route {net}"))?;
        }
        for net in &plan.routes_add {
            self.netlink.add_route(self.index, *net).await.with_context(|| format!("adding route {net}"))?;
        }
        let endpoints: Vec<std::net::SocketAddr> = peers.iter().filter_map(|p| p.endpoint).collect();
        if endpoints != self.endpoints {
            self.endpoints = endpoints;
            self.endpoints_changed = true;
        }
        let keys = |v: &[Peer]| v.iter().map(|p| p.public_key.to_base64()).collect::<Vec<_>>();
        info!(
            trigger, interface = %self.cfg.interface, ifindex = self.index, peers = peers.len(),
            added = ?keys(&plan.add), updated = ?keys(&plan.update),
            removed = ?plan.remove.iter().map(|k| k.to_base64()).collect::<Vec<_>>(),
            routes_added = ?plan.routes_add.iter().map(ToString::to_string).collect::<Vec<_>>(),
            routes_removed = ?plan.routes_del.iter().map(ToString::to_string).collect::<Vec<_>>(),
            regions = ?peers.iter().filter_map(|p| p.region.clone()).collect::<std::collections::BTreeSet<_>>(),
            "wireguard peers reconciled"
        );
        Ok(())
    }

    /// The device's peers with their last handshakes, for the control plane's inventory.
    pub fn peer_status(&self) -> std::io::Result<Vec<ringfence_proto::api::WireGuardPeerStatus>> {
        let unix_ms = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
        };
        Ok(self
            .device
            .peers()?
            .into_iter()
            .map(|p| ringfence_proto::api::WireGuardPeerStatus {
                public_key: p.public_key.to_base64(),
                endpoint: p.endpoint.map(|e| e.to_string()),
                last_handshake_ms: p.last_handshake.map(unix_ms),
            })
            .collect())
    }

    /// Whether the peers come from a peers file (`--wg-peers`) rather than from the caller.
    pub fn follows_file(&self) -> bool {
        self.cfg.peers_file.is_some()
    }

    /// Puts `peers` in force; a failure is logged.
    pub async fn set_peers(&mut self, peers: &[Peer], trigger: &str) {
        if let Err(e) = self.reconcile(peers, trigger).await {
            error!(trigger, interface = %self.cfg.interface, error = %format!("{e:#}"), "wireguard reconcile failed");
        }
    }

    /// Re-reads the peers file; a bad file is logged and the peers in force stay.
    pub async fn reload(&mut self, trigger: &str) {
        let Some(path) = self.cfg.peers_file.clone() else { return };
        if let Some(w) = self.watch.as_mut() {
            w.mark_seen();
        }
        match peers::load(&path) {
            Ok(peers) => self.set_peers(&peers, trigger).await,
            Err(errors) => {
                error!(trigger, errors = %errors.join("; "), "peers file rejected; the peers in force stay")
            }
        }
    }

    /// Reloads when the peers file changed.
    pub async fn poll(&mut self) {
        if self.watch.as_mut().is_some_and(FileWatch::changed) {
            self.reload("peers file change").await;
        }
    }
}

/// `ringfence-agent wg pubkey`: the node's public key, generating the private key if absent.
pub fn pubkey(state_dir: &Path) -> Result<String, AgentError> {
    let (key, _) = keys::load_or_create(state_dir).map_err(|e| match e {
        keys::KeyError::Io { path, source } => AgentError::io("WireGuard key", path, source),
        other => AgentError::Config(vec![other.to_string()]),
    })?;
    Ok(key.get_public().to_base64())
}

/// `ringfence-agent wg down`: stops a userspace implementation serving the interface, removes
/// its socket, and deletes the link. Returns what was done.
pub async fn down(iface: &str) -> Result<Vec<String>, AgentError> {
    let mut done = Vec::new();
    let pids = device::stop_userspace(iface);
    if !pids.is_empty() {
        done.push(format!("stopped userspace WireGuard (pid {pids:?})"));
    }
    let netlink = Netlink::connect().map_err(|e| wg_err(iface, e))?;
    if let Some(index) = netlink.index(iface).await.map_err(|e| wg_err(iface, e))? {
        netlink.delete(index).await.map_err(|e| wg_err(iface, e))?;
        done.push(format!("deleted link {iface}"));
    }
    Ok(done)
}

/// The default state directory as a path.
pub fn default_state_dir() -> PathBuf {
    PathBuf::from(DEFAULT_STATE_DIR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_wireguard_problem_is_reported_at_once() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let peers = dir.join("peers.json");
        std::fs::write(&peers, r#"{"peers":[{"publicKey":"x"}]}"#).unwrap();
        let cfg = WgConfig {
            interface: "this-name-is-far-too-long".into(),
            addresses: vec!["198.51.100.1".into()],
            listen_port: 0,
            peers_file: Some(peers),
            backend: WgBackendChoice::Userspace,
            userspace_impl: Some(dir.join("missing-boringtun")),
            state_dir: dir.join("state"),
            mtu: DEFAULT_MTU,
            endpoint: None,
        };
        let errors = check(&cfg).unwrap_err();
        let text = errors.join("\n");
        for needle in [
            "--wg-interface",
            "--wg-address \"198.51.100.1\"",
            "--wg-listen-port 0",
            "missing-boringtun",
            "publicKey \"x\"",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in {text}");
        }
        assert!(!cfg.state_dir.exists(), "check must not create the state directory");
    }
}
