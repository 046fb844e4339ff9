//! `ringfence-agent`: the Ringfence node daemon.
use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use ringfence_agent::{
    bpf,
    config::{WgBackendChoice, WgConfig},
    error::AgentError,
    exfil::Selector,
    logging::{self, LogFormat},
    report, report_fqdn,
    run::{run_with_wg, RunConfig},
    selftest, wg,
    workloads::{print_workloads, WorkloadsConfig},
};

const DEFAULT_BPFFS: &str = "/sys/fs/bpf/ringfence";

#[derive(Parser)]
#[command(name = "ringfence-agent", version, about = "Ringfence egress enforcement agent")]
struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value = "text", global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once
enum Cmd {
    /// Enforce a policy on a cgroup; reloads on SIGHUP and when the file changes.
    Run {
        /// Policy file (YAML, ringfence.dev/v1 EgressPolicy).
        #[arg(long, required_unless_present = "control", conflicts_with = "control")]
        policy: Option<PathBuf>,
        /// Take the policy and WireGuard peers from the control plane this node enrolled with
        /// (`ringfence-agent enroll`): signed bundles, the last good one kept in --state-dir.
        #[arg(long)]
        control: bool,
        /// cgroup v2 directory whose processes (and sub-cgroups) are enforced by the policy.
        #[arg(long, required_unless_present = "cgroup_root", conflicts_with = "cgroup_root")]
        cgroup: Option<PathBuf>,
        /// Per-workload policies: the cgroup v2 tree (e.g. /sys/fs/cgroup, a kubepods or slurm
        /// tree) whose cgroups are workloads. Each gets the --workload-policy its labels select
        /// (labels from --identity), every other cgroup under it the node default (--policy).
        #[arg(long = "cgroup-root", value_name = "DIR", requires = "identity")]
        cgroup_root: Option<PathBuf>,
        /// Identity sources (YAML, ringfence.dev/v1 IdentitySources): static, slurm, kubernetes.
        #[arg(long, value_name = "FILE", requires = "cgroup_root")]
        identity: Option<PathBuf>,
        /// A workload policy (with spec.workloadSelector); repeat for several (at most 255).
        #[arg(long = "workload-policy", value_name = "FILE", requires = "cgroup_root")]
        workload_policies: Vec<PathBuf>,
        /// Directory on a bpf filesystem where links and maps are pinned (created if missing);
        /// enforcement stays in force there when the agent stops.
        #[arg(long, default_value = DEFAULT_BPFFS)]
        bpffs: PathBuf,
        /// Geo-IP database (MaxMind DB: GeoIP2/GeoLite2/DB-IP country or city, or the flat
        /// `country_code` layout). Give it twice for separate IPv4 and IPv6 files.
        #[arg(long = "geoip-db", value_name = "FILE")]
        geoip_db: Vec<PathBuf>,
        /// Dotted field holding the country code (default: detected).
        #[arg(long = "geoip-field", value_name = "FIELD")]
        geoip_field: Option<String>,
        /// Uplink interface for the packet path (flow accounting, policy on raw and forwarded
        /// traffic); repeat for several. The agent must run in the interface's network namespace.
        #[arg(long = "interface", value_name = "IFACE")]
        interfaces: Vec<String>,
        /// Seconds without a packet after which a flow leaves the flow table.
        #[arg(long, default_value_t = 300.0)]
        flow_idle_timeout: f64,
        /// Seconds between checks of the policy and database files for changes.
        #[arg(long, default_value_t = 1.0)]
        watch_interval: f64,
        /// Seconds between reads of the flow counters by the exfiltration detector.
        #[arg(long, default_value_t = 0.5)]
        exfil_poll: f64,
        /// Run `selftest exfil` every this many seconds (at least 60) and log the result; 0
        /// (the default) never.
        #[arg(long = "selftest-every", value_name = "SECONDS", default_value_t = 0)]
        selftest_every: u64,
        /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9470): GET /metrics.
        #[arg(long = "metrics-listen", value_name = "ADDR:PORT")]
        metrics_listen: Option<std::net::SocketAddr>,
        /// Enforce even where the kernel cannot run the socket guard (BPF LSM, Linux >= 6.0 with
        /// "bpf" among the active LSMs): raw, packet and XDP sockets of the cgroup are then NOT
        /// refused (IP packets from raw sockets are still decided). Without this flag the agent
        /// refuses to start on such a kernel (exit 69).
        #[arg(long)]
        allow_weaker_isolation: bool,
        #[command(flatten)]
        wg: WgArgs,
    },
    /// Enroll this node with a control plane using a one-time join token (`ringfence token
    /// create`); the node's key stays in --state-dir.
    Enroll {
        /// The control plane, e.g. https://control.example:8443.
        #[arg(long)]
        server: String,
        /// The join token.
        #[arg(long, env = "RINGFENCE_JOIN_TOKEN", hide_env_values = true)]
        token: String,
        /// The control plane's CA certificate (its state directory's ca.pem).
        #[arg(long, value_name = "FILE")]
        ca: PathBuf,
        /// Where the node's key, certificate and control-plane identity are kept (give the same
        /// directory to `run --control`).
        #[arg(long = "state-dir", value_name = "DIR", default_value = wg::DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        /// Name reported to the control plane (default: the host name).
        #[arg(long)]
        hostname: Option<String>,
    },
    /// WireGuard mesh helpers.
    Wg {
        #[command(subcommand)]
        cmd: WgCmd,
    },
    /// Remove the pinned programs and maps: enforcement stops.
    Detach {
        /// Directory on a bpf filesystem where the agent pinned its links and maps (as given to `run`).
        #[arg(long, default_value = DEFAULT_BPFFS)]
        bpffs: PathBuf,
    },
    /// The workloads the agent (run --cgroup-root) found: cgroup, id, labels and the policy
    /// that governs each (from <state-dir>/workloads.json).
    Workloads {
        /// The agent's state directory (as given to `run`).
        #[arg(long = "state-dir", value_name = "DIR", default_value = wg::DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
        /// Print the JSON array as recorded.
        #[arg(long)]
        json: bool,
    },
    /// Per-flow byte counters from the packet path (a table; one JSON array with --json).
    Flows {
        /// Directory on a bpf filesystem where the agent pinned its links and maps (as given to `run`).
        #[arg(long, default_value = DEFAULT_BPFFS)]
        bpffs: PathBuf,
        /// Print one JSON array of flows: protocol, local, local_port, remote, remote_port,
        /// tx_bytes, tx_packets, tx_data_bytes (TCP: without retransmissions, else null),
        /// finished, rx_bytes, rx_packets, cgroup_id, dropped_packets, first_seen_secs_ago,
        /// last_seen_secs_ago, and under --cgroup-root the workload and its labels.
        #[arg(long)]
        json: bool,
        /// The agent's state directory (as given to `run`): flows name their workload from it.
        #[arg(long = "state-dir", value_name = "DIR", default_value = wg::DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
    /// List the exfiltration blocks in force (cgroup, destination, time left).
    Blocks {
        /// Directory on a bpf filesystem where the agent pinned its links and maps (as given to `run`).
        #[arg(long, default_value = DEFAULT_BPFFS)]
        bpffs: PathBuf,
        /// Print one JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Lift exfiltration blocks: all (--all), or those of a cgroup and/or destination.
    Release {
        /// Directory on a bpf filesystem where the agent pinned its links and maps (as given to `run`).
        #[arg(long, default_value = DEFAULT_BPFFS)]
        bpffs: PathBuf,
        /// Lift every block.
        #[arg(long, conflicts_with_all = ["cgroup_id", "destination"])]
        all: bool,
        /// Only blocks of this cgroup id (as in alerts and `blocks`).
        #[arg(long = "cgroup-id", value_name = "ID")]
        cgroup_id: Option<u64>,
        /// Only blocks of this destination address.
        #[arg(long, value_name = "IP")]
        destination: Option<std::net::IpAddr>,
    },
    /// Used by `run`'s start-up self-check: creates one socket and exits.
    #[command(name = "probe-socket", hide = true)]
    ProbeSocket,
    /// List the addresses learned from DNS answers: per policy, the name, the address and the
    /// time left.
    Fqdn {
        /// Directory on a bpf filesystem where the agent pinned its links and maps (as given to `run`).
        #[arg(long, default_value = DEFAULT_BPFFS)]
        bpffs: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Prove a control works on this node now: `exfil` uploads from a throwaway cgroup (a
    /// workload with a 1 MiB budget) to a throwaway sink and checks that the kernel stops it.
    /// Prints the result as JSON; exit 0 when it passed, 1 when it failed (with the reason).
    Selftest {
        /// The control to test (only `exfil`).
        #[arg(value_parser = ["exfil"])]
        what: String,
        /// Directory on a bpf filesystem where the agent pinned its links and maps (as given to `run`).
        #[arg(long, default_value = DEFAULT_BPFFS)]
        bpffs: PathBuf,
        /// The cgroup the agent enforces (`--cgroup` or `--cgroup-root` of `run`): the throwaway
        /// cgroup is created below it.
        #[arg(long, value_name = "DIR")]
        cgroup: PathBuf,
    },
    /// The self-test's client (run inside its throwaway cgroup).
    #[command(name = "selftest-client", hide = true)]
    SelftestClient { addr: String, bytes: u64 },
    /// Show the policy generation in force, the hooks attached and every kernel counter.
    Status {
        /// Directory on a bpf filesystem where the agent pinned its links and maps (as given to `run`).
        #[arg(long, default_value = DEFAULT_BPFFS)]
        bpffs: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// WireGuard options of `run`; without `--wg-interface` nothing WireGuard happens.
#[derive(clap::Args)]
struct WgArgs {
    /// WireGuard interface the agent owns (created, or adopted if it exists).
    #[arg(long = "wg-interface", value_name = "NAME")]
    interface: Option<String>,
    /// The node's tunnel address (CIDR); repeat for IPv4 and IPv6.
    #[arg(long = "wg-address", value_name = "CIDR")]
    addresses: Vec<String>,
    /// UDP port WireGuard listens on.
    #[arg(long = "wg-listen-port", value_name = "N", default_value_t = wg::DEFAULT_LISTEN_PORT)]
    listen_port: u16,
    /// Peers file (JSON: {"peers":[{"publicKey","endpoint","allowedIps","region"}]}); reloaded
    /// when it changes and on SIGHUP.
    #[arg(long = "wg-peers", value_name = "FILE")]
    peers: Option<PathBuf>,
    /// kernel module, userspace implementation, or auto (kernel when the module is loaded).
    #[arg(long = "wg-backend", value_enum, default_value = "auto")]
    backend: WgBackendChoice,
    /// Userspace implementation (default: boringtun-cli, boringtun or wireguard-go from PATH).
    #[arg(long = "wg-userspace-impl", value_name = "PATH")]
    userspace_impl: Option<PathBuf>,
    /// Where peers reach this node's WireGuard (HOST:PORT), reported to the control plane
    /// (with --control), which gives it to the other nodes of the region.
    #[arg(long = "wg-endpoint", value_name = "HOST:PORT")]
    endpoint: Option<String>,
    /// State directory: the event spool, the alerted-flows record, the control-plane identity
    /// and the WireGuard private key (mode 0600). Created if missing.
    #[arg(long = "state-dir", value_name = "DIR", default_value = wg::DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
}

impl WgArgs {
    fn into_config(self) -> Result<Option<WgConfig>, String> {
        let Some(interface) = self.interface else {
            if !self.addresses.is_empty() || self.peers.is_some() || self.userspace_impl.is_some() {
                return Err("--wg-address, --wg-peers and --wg-userspace-impl need --wg-interface".into());
            }
            return Ok(None);
        };
        Ok(Some(WgConfig {
            interface,
            addresses: self.addresses,
            listen_port: self.listen_port,
            peers_file: self.peers,
            backend: self.backend,
            userspace_impl: self.userspace_impl,
            state_dir: self.state_dir,
            mtu: wg::DEFAULT_MTU,
            endpoint: self.endpoint,
        }))
    }
}

#[derive(Subcommand)]
enum WgCmd {
    /// Print the node's WireGuard public key (generating the private key if absent).
    Pubkey {
        /// State directory holding the private key (as given to `run`).
        #[arg(long = "state-dir", value_name = "DIR", default_value = wg::DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
    /// Remove the WireGuard interface (and stop its userspace implementation).
    Down {
        /// The WireGuard interface to remove (as given to `run`).
        #[arg(long = "wg-interface", value_name = "NAME")]
        interface: String,
    },
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime")
}

fn wg_cmd(cmd: WgCmd) -> Result<(), AgentError> {
    match cmd {
        WgCmd::Pubkey { state_dir } => wg::pubkey(&state_dir).map(|k| println!("{k}")),
        WgCmd::Down { interface } => runtime().block_on(wg::down(&interface)).map(|done| {
            if done.is_empty() {
                println!("{interface}: nothing to remove");
            }
            for d in done {
                println!("{interface}: {d}");
            }
        }),
    }
}

fn enroll(
    server: &str,
    token: &str,
    ca: &std::path::Path,
    state_dir: &std::path::Path,
    hostname: Option<String>,
) -> Result<(), AgentError> {
    let hostname = hostname.unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
    });
    let id = runtime()
        .block_on(ringfence_agent::control::enroll(server, token, ca, state_dir, &hostname, None))
        .map_err(ringfence_agent::remote::control_err)?;
    println!(
        "enrolled as node {} in region {} (run `ringfence-agent run --control --state-dir {}`)",
        id.node_id(),
        id.meta.region,
        state_dir.display()
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_format = cli.log_format;
    logging::init(log_format);
    let result = match cli.cmd {
        Cmd::Run {
            policy,
            control,
            cgroup,
            cgroup_root,
            identity,
            workload_policies,
            bpffs,
            geoip_db,
            geoip_field,
            interfaces,
            flow_idle_timeout,
            watch_interval,
            exfil_poll,
            selftest_every,
            metrics_listen,
            allow_weaker_isolation,
            wg,
        } => {
            let state_dir = wg.state_dir.clone();
            let wg = wg.into_config();
            let mut errors = Vec::new();
            if !(0.05..=3600.0).contains(&watch_interval) {
                errors.push(format!(
                    "--watch-interval {watch_interval}: must be between 0.05 and 3600 seconds"
                ));
            }
            if !(0.05..=60.0).contains(&exfil_poll) {
                errors.push(format!("--exfil-poll {exfil_poll}: must be between 0.05 and 60 seconds"));
            }
            if selftest_every != 0 && selftest_every < 60 {
                errors.push(format!("--selftest-every {selftest_every}: 0 (off) or at least 60 seconds"));
            }
            if let Err(e) = &wg {
                errors.push(e.clone());
            }
            if !errors.is_empty() {
                Err(AgentError::Config(errors))
            } else {
                let workloads =
                    identity.map(|identity| WorkloadsConfig { identity, policies: workload_policies });
                let cfg = RunConfig {
                    policy,
                    cgroup: cgroup.or(cgroup_root).expect("clap requires --cgroup or --cgroup-root"),
                    workloads,
                    bpffs,
                    geoip_db,
                    geoip_field,
                    interfaces,
                    flow_idle_timeout: Duration::from_secs_f64(flow_idle_timeout.clamp(0.1, 86_400.0)),
                    watch_interval: Duration::from_secs_f64(watch_interval),
                    grace: Duration::from_secs(2),
                    state_dir,
                    exfil_poll: Duration::from_secs_f64(exfil_poll),
                    selftest_every: (selftest_every > 0).then(|| Duration::from_secs(selftest_every)),
                    metrics_listen,
                    control,
                    allow_weaker_isolation,
                };
                runtime().block_on(run_with_wg(cfg, wg.expect("checked above")))
            }
        }
        Cmd::Enroll { server, token, ca, state_dir, hostname } => {
            enroll(&server, &token, &ca, &state_dir, hostname)
        }
        Cmd::Detach { bpffs } => bpf::detach_all(&bpffs).map(|removed| {
            println!("removed {} pins under {}", removed.len(), bpffs.display());
        }),
        Cmd::Status { bpffs, json } => report::status(&bpffs, json),
        Cmd::Fqdn { bpffs, json } => report_fqdn::fqdn(&bpffs, json),
        Cmd::ProbeSocket => bpf::probe_socket(),
        Cmd::Selftest { what: _, bpffs, cgroup } => {
            let result = selftest::run(&selftest::Options { bpffs, cgroup });
            println!("{}", serde_json::to_string(&result).expect("result serializes"));
            return if result.passed { ExitCode::SUCCESS } else { ExitCode::from(1) };
        }
        Cmd::SelftestClient { addr, bytes } => return ExitCode::from(selftest::client(&addr, bytes) as u8),
        Cmd::Wg { cmd } => wg_cmd(cmd),
        Cmd::Flows { bpffs, json, state_dir } => report::flows(&bpffs, &state_dir, json),
        Cmd::Workloads { state_dir, json } => print_workloads(&state_dir, json),
        Cmd::Blocks { bpffs, json } => report::blocks(&bpffs, json),
        Cmd::Release { bpffs, all, cgroup_id, destination } => {
            if !all && cgroup_id.is_none() && destination.is_none() {
                Err(AgentError::Config(vec![
                    "release: say which blocks to lift: --all, --cgroup-id ID and/or --destination IP".into(),
                ]))
            } else {
                report::release(&bpffs, &Selector { cgroup_id, destination })
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Once: a JSON log line for log collectors, else a plain line for people.
            match log_format {
                logging::LogFormat::Json => tracing::error!("{e}"),
                logging::LogFormat::Text => eprintln!("ringfence-agent: {e}"),
            }
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
