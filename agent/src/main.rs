//! `ringfence-agent`: the Ringfence node daemon.
use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use ringfence_agent::{
    bpf,
    config::{WgBackendChoice, WgConfig},
    error::AgentError,
    flows::FlowTable,
    geo::GeoStatus,
    logging::{self, LogFormat},
    maps::PinnedMaps,
    run::{run_with_wg, RunConfig},
    wg,
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
        #[arg(long)]
        policy: PathBuf,
        /// cgroup v2 directory whose processes (and sub-cgroups) are enforced.
        #[arg(long)]
        cgroup: PathBuf,
        /// Directory on a bpf filesystem where links and maps are pinned.
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
        #[command(flatten)]
        wg: WgArgs,
    },
    /// WireGuard mesh helpers.
    Wg {
        #[command(subcommand)]
        cmd: WgCmd,
    },
    /// Remove the pinned programs and maps: enforcement stops.
    Detach {
        #[arg(long, default_value = DEFAULT_BPFFS)]
        bpffs: PathBuf,
    },
    /// Per-flow byte counters from the packet path (JSON lines with --json).
    Flows {
        #[arg(long, default_value = DEFAULT_BPFFS)]
        bpffs: PathBuf,
        /// Print one JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Show the policy generation in force and the kernel counters.
    Status {
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
    /// Directory for the WireGuard private key (mode 0600).
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
        }))
    }
}

#[derive(Subcommand)]
enum WgCmd {
    /// Print the node's WireGuard public key (generating the private key if absent).
    Pubkey {
        #[arg(long = "state-dir", value_name = "DIR", default_value = wg::DEFAULT_STATE_DIR)]
        state_dir: PathBuf,
    },
    /// Remove the WireGuard interface (and stop its userspace implementation).
    Down {
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

fn status(bpffs: PathBuf, json: bool) -> Result<(), AgentError> {
    let attached = bpf::has_pinned_links(&bpffs);
    if !attached && !bpffs.exists() {
        println!("not enforcing: nothing pinned under {}", bpffs.display());
        return Ok(());
    }
    let maps = PinnedMaps::open(&bpffs)?;
    let active = maps.active_policy()?;
    let stats = maps.stats()?;
    let geo = GeoStatus::from(&maps.geo_info()?);
    if json {
        let v = serde_json::json!({
            "attached": attached, "bpffs": bpffs, "policy": active, "counters": stats, "geo": geo
        });
        println!("{v}");
    } else {
        let db = match (&geo.database_type, &geo.build_date) {
            (Some(t), Some(d)) => format!("{t} built {d}, {} networks", geo.networks),
            _ => "none".to_string(),
        };
        println!("attached:   {attached} ({})", bpffs.display());
        println!("geo-ip:     {db}; {} IPv4 + {} IPv6 entries loaded", geo.entries_v4, geo.entries_v6);
        println!(
            "policy:     generation {} (slot {}), mode {}, default {}",
            active.generation, active.slot, active.mode, active.default_action
        );
        println!(
            "counters:   allowed {}, denied {}, audited {}, events dropped {}",
            stats.allowed, stats.denied, stats.audited, stats.events_dropped
        );
    }
    Ok(())
}

fn flows(bpffs: PathBuf, json: bool) -> Result<(), AgentError> {
    let flows = FlowTable::open(&bpffs)?.flows()?;
    if json {
        println!("{}", serde_json::to_string(&flows).expect("flows serialize"));
        return Ok(());
    }
    println!(
        "{:<5} {:>40} {:>40} {:>14} {:>14} {:>8} {:>10}",
        "proto", "local", "remote", "tx bytes", "rx bytes", "dropped", "cgroup"
    );
    for f in flows {
        println!(
            "{:<5} {:>40} {:>40} {:>14} {:>14} {:>8} {:>10}",
            f.protocol,
            format!("{}:{}", f.local, f.local_port),
            format!("{}:{}", f.remote, f.remote_port),
            f.tx_bytes,
            f.rx_bytes,
            f.dropped_packets,
            f.cgroup_id
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    let result = match cli.cmd {
        Cmd::Run {
            policy,
            cgroup,
            bpffs,
            geoip_db,
            geoip_field,
            interfaces,
            flow_idle_timeout,
            watch_interval,
            wg,
        } => {
            let wg = wg.into_config();
            if !(0.05..=3600.0).contains(&watch_interval) {
                Err(AgentError::Config(vec![format!(
                    "--watch-interval {watch_interval}: must be between 0.05 and 3600 seconds"
                )]))
            } else if let Err(e) = wg {
                Err(AgentError::Config(vec![e]))
            } else {
                let cfg = RunConfig {
                    policy,
                    cgroup,
                    bpffs,
                    geoip_db,
                    geoip_field,
                    interfaces,
                    flow_idle_timeout: Duration::from_secs_f64(flow_idle_timeout.clamp(0.1, 86_400.0)),
                    watch_interval: Duration::from_secs_f64(watch_interval),
                    grace: Duration::from_secs(2),
                };
                runtime().block_on(run_with_wg(cfg, wg.expect("checked above")))
            }
        }
        Cmd::Detach { bpffs } => bpf::detach_all(&bpffs).map(|removed| {
            println!("removed {} pins under {}", removed.len(), bpffs.display());
        }),
        Cmd::Status { bpffs, json } => status(bpffs, json),
        Cmd::Wg { cmd } => wg_cmd(cmd),
        Cmd::Flows { bpffs, json } => flows(bpffs, json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("ringfence-agent: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
