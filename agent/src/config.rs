//! What `ringfence-agent run` was asked to do.
use std::{net::SocketAddr, path::PathBuf, time::Duration};

/// Arguments of `run`.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The policy file; `None` under a control plane (the policy comes from bundles).
    pub policy: Option<PathBuf>,
    /// Where the programs are attached: the enforced cgroup (`--cgroup`) or the root of the
    /// workload cgroups (`--cgroup-root`).
    pub cgroup: PathBuf,
    /// Under `--cgroup-root`: the identity sources and the workload policies.
    pub workloads: Option<WorkloadsConfig>,
    pub bpffs: PathBuf,
    /// Geo-IP databases (MaxMind DB format): none, one with both families, or one per family.
    pub geoip_db: Vec<PathBuf>,
    /// Dotted field holding the country code; `None` detects it.
    pub geoip_field: Option<String>,
    /// Uplink interfaces (in the agent's network namespace) that get the packet path.
    pub interfaces: Vec<String>,
    /// Flows without a packet for this long are removed from the flow table.
    pub flow_idle_timeout: Duration,
    /// How often the policy and database files are checked for changes.
    pub watch_interval: Duration,
    /// How long to keep draining events after a shutdown signal.
    pub grace: Duration,
    /// Where the agent keeps state: the alert spool (and the WireGuard key).
    pub state_dir: PathBuf,
    /// How often the exfiltration detector reads the flow counters.
    pub exfil_poll: Duration,
    /// How often `run` performs `selftest exfil` (`None`: never, the default).
    pub selftest_every: Option<Duration>,
    /// Prometheus endpoint (`GET /metrics`), if any.
    pub metrics_listen: Option<SocketAddr>,
    /// Take the policy (and WireGuard peers) from the control plane this node enrolled with.
    pub control: bool,
    /// Enforce even where the kernel cannot run the socket guard (BPF LSM): raw, packet and XDP
    /// sockets are then not refused.
    pub allow_weaker_isolation: bool,
}

/// What `run --cgroup-root` was given (see `crate::workloads`).
#[derive(Debug, Clone)]
pub struct WorkloadsConfig {
    /// The identity sources' configuration file (`--identity`).
    pub identity: PathBuf,
    /// `--workload-policy` files, each with a `spec.workloadSelector`.
    pub policies: Vec<PathBuf>,
}

/// Which WireGuard implementation drives the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WgBackendChoice {
    /// The kernel module when it is loaded, otherwise a userspace implementation from PATH.
    Auto,
    /// The kernel's WireGuard (module `wireguard`); fails if it is not available.
    Kernel,
    /// A userspace implementation (boringtun-cli, boringtun or wireguard-go; see --wg-userspace-impl).
    Userspace,
}

/// WireGuard options of `run` (all unset: the agent does nothing WireGuard). Kept apart from
/// [`RunConfig`] so existing callers need not change. Strings are parsed by `wg::check`, which
/// reports every problem at once.
#[derive(Debug, Clone)]
pub struct WgConfig {
    pub interface: String,
    /// The node's tunnel addresses (CIDR), at most one per family is typical.
    pub addresses: Vec<String>,
    pub listen_port: u16,
    /// Peers file (JSON); `None`: no peers until one is given.
    pub peers_file: Option<PathBuf>,
    pub backend: WgBackendChoice,
    /// Userspace implementation (boringtun-cli or wireguard-go); `None` searches PATH.
    pub userspace_impl: Option<PathBuf>,
    /// Where the private key (mode 0600) and the userspace implementation's log live.
    pub state_dir: PathBuf,
    pub mtu: u32,
    /// `host:port` where peers reach this node's WireGuard, reported to the control plane.
    pub endpoint: Option<String>,
}
