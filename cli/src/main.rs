//! `ringfence` command-line tool.
//!
//! * `ringfence policy check FILE [--geoip-db FILE]...`: validate and compile a policy. Exit 0
//!   if valid, 64 if not (every diagnostic on stderr as `FILE:LINE:COL: error: MSG`), 66 if a
//!   file is unreadable. Without a database, country rules are validated but not resolved.
//! * `ringfence policy explain FILE --to ADDR[:PORT][/tcp|udp] [--geoip-db FILE]... [--json]`:
//!   show the verdict for a destination and why. Exit 0 whatever the verdict, 64 for an invalid
//!   policy or `--to`, or a policy naming countries without `--geoip-db`. `--from
//!   ADDR[:PORT][/tcp|udp]` instead explains an incoming connection from ADDR to the workload's
//!   local PORT by `spec.ingress` (`from.workloads` selectors match nothing offline). `--to
//!   HOST[:PORT][/tcp|udp] --resolve` names the rule (`to.fqdns`) that would let HOST in and
//!   the verdict for each address this machine resolves HOST to.
//! * `ringfence policy explain --workload KEY=VALUE,... FILE...`: which of the files governs a
//!   workload with these labels and why (the matching workloadSelector, else the node default).
//!   Exit 0, 64 for invalid files or labels or when two workload policies match (both named).
//! * `ringfence geo lookup ADDR --db FILE... [--json]`: the country of an address. Exit 0 whether
//!   or not the database has a record, 64 for an invalid address, 66 for an unreadable database.
//!
//! Operator commands, against a control plane (`--server URL --ca FILE --admin-token-file FILE`,
//! or RINGFENCE_SERVER, RINGFENCE_CA, RINGFENCE_ADMIN_TOKEN_FILE; see `ringfence_cli`):
//! `token create`, `nodes [list|show ID|revoke ID]`, `policy apply|diff|history|rollback`, `alerts`,
//! `audit verify|export`. Exit 0 on success, 1 refused, 64 bad argument or invalid policy,
//! 66 unreadable file, 69 control plane unreachable. `completions SHELL` prints shell completions.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use ringfence_cli::offline::geo::{self, GeoArgs};
use ringfence_cli::offline::{policy, resolve, workload};
use ringfence_cli::{CliError, OperatorCommand, PolicyOperatorCommand, ServerArgs};

#[derive(Parser)]
#[command(name = "ringfence", version, about = "Ringfence eBPF egress firewall")]
struct Cli {
    #[command(flatten)]
    server: ServerArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work with policy files.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Work with geo-IP databases.
    Geo {
        #[command(subcommand)]
        command: GeoCommand,
    },
    #[command(flatten)]
    Operator(OperatorCommand),
    /// Print shell completions.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
enum GeoCommand {
    /// Look up the country of an address.
    Lookup {
        /// The IPv4 or IPv6 address.
        addr: String,
        /// A MaxMind DB (.mmdb) country database; repeat for separate IPv4 and IPv6 files.
        #[arg(long, value_name = "FILE", required = true)]
        db: Vec<PathBuf>,
        /// The record field holding the country code, as a dotted path (default: detected).
        #[arg(long, value_name = "FIELD")]
        field: Option<String>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate a policy file and check that it compiles for the kernel.
    Check {
        /// The policy YAML file.
        file: PathBuf,
        #[command(flatten)]
        geo: GeoArgs,
    },
    /// Explain the verdict of a policy for one destination, or one incoming connection; or
    /// which of several policy files governs a workload (--workload).
    Explain {
        /// The policy YAML file (several with --workload: the node default and the workload
        /// policies).
        #[arg(required = true, num_args = 1..)]
        files: Vec<PathBuf>,
        #[arg(
            long,
            value_name = "DESTINATION",
            required_unless_present_any = ["from", "workload"],
            conflicts_with_all = ["from", "workload"],
            help = "Destination: ADDR[:PORT][/tcp|udp], e.g. 198.51.100.7:443/tcp or [2001:db8::1]:53/udp"
        )]
        to: Option<String>,
        #[arg(
            long,
            value_name = "SOURCE",
            conflicts_with = "workload",
            help = "Incoming connection (spec.ingress): source ADDR, the workload's local PORT, e.g. 192.0.2.10:29500/tcp"
        )]
        from: Option<String>,
        #[arg(
            long,
            value_name = "LABELS",
            help = "Which of the files governs a workload with these labels: KEY=VALUE,KEY2=VALUE2, e.g. job=train,team=ml"
        )]
        workload: Option<String>,
        #[command(flatten)]
        geo: GeoArgs,
        /// With --to HOST[:PORT][/tcp|udp]: which name rule (to.fqdns) decides HOST, and the
        /// verdict for each address this machine resolves it to.
        #[arg(long, requires = "to")]
        resolve: bool,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    #[command(flatten)]
    Operator(PolicyOperatorCommand),
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Policy { command: PolicyCommand::Check { file, geo } } => {
            if let Err(code) = policy::check(&file, &geo) {
                return Ok(code);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy {
            command: PolicyCommand::Explain { files, to, from, workload, geo, resolve, json },
        } => {
            if let Some(workload) = workload {
                return workload::explain_workload_command(&files, &workload, json)
                    .context("writing the explanation");
            }
            let [file] = files.as_slice() else {
                eprintln!("error: --to and --from explain one policy file (several only with --workload)");
                return Ok(ExitCode::from(ringfence_cli::client::EXIT_USAGE));
            };
            match (to, from) {
                (Some(to), _) if resolve => resolve::explain_resolve_command(file, &to, json),
                (Some(to), _) => policy::explain_command(file, &to, &geo, json),
                (None, Some(from)) => policy::explain_ingress_command(file, &from, &geo, json),
                (None, None) => unreachable!("clap requires --to, --from or --workload"),
            }
            .context("writing the explanation")
        }
        Command::Geo { command: GeoCommand::Lookup { addr, db, field, json } } => {
            Ok(geo::lookup(&addr, &db, field.as_deref(), json)?)
        }
        Command::Policy { command: PolicyCommand::Operator(command) } => {
            operator(|runtime| runtime.block_on(ringfence_cli::run_policy(&cli.server, command)))
        }
        Command::Operator(command) => {
            operator(|runtime| runtime.block_on(ringfence_cli::run_operator(&cli.server, command)))
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "ringfence", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Runs an operator command on a runtime; a failure prints `error: ...` (what to do) and exits
/// with its status.
fn operator(f: impl FnOnce(&tokio::runtime::Runtime) -> Result<(), CliError>) -> anyhow::Result<ExitCode> {
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting the runtime")?;
    match f(&runtime) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(e.exit_code()))
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
