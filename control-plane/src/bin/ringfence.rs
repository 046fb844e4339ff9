//! `ringfence` command-line tool.
//!
//! * `ringfence policy check FILE [--geoip-db FILE]...`: validate and compile a policy. Exit 0
//!   if valid, 64 if not (every diagnostic on stderr as `FILE:LINE:COL: error: MSG`), 66 if a
//!   file is unreadable. Without a database, country rules are validated but not resolved.
//! * `ringfence policy explain FILE --to ADDR[:PORT][/tcp|udp] [--geoip-db FILE]... [--json]`:
//!   show the verdict for a destination and why. Exit 0 whatever the verdict, 64 for an invalid
//!   policy or `--to`, or a policy naming countries without `--geoip-db`.
//! * `ringfence geo lookup ADDR --db FILE... [--json]`: the country of an address. Exit 0 whether
//!   or not the database has a record, 64 for an invalid address, 66 for an unreadable database.
//!
//! Operator commands, against a control plane (`--server URL --ca FILE --admin-token-file FILE`,
//! or RINGFENCE_SERVER, RINGFENCE_CA, RINGFENCE_ADMIN_TOKEN_FILE; see `ringfence_control::cli`):
//! `token create`, `nodes [list|revoke ID]`, `policy apply|diff|history|rollback`, `alerts`,
//! `audit verify|export`. Exit 0 on success, 1 refused, 64 bad argument or invalid policy,
//! 66 unreadable file, 69 control plane unreachable. `completions SHELL` prints shell completions.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, CommandFactory, Parser, Subcommand};
use ringfence_control::cli::{self, OperatorCommand, PolicyOperatorCommand, ServerArgs};
use ringfence_policy::countries::{country_name, country_str};
use ringfence_policy::geo::GeoDb;
use ringfence_policy::{compile, parse_policy, Action, Compiled, DecidedBy, Decision, Destination, Policy};

#[path = "ringfence/geo_cmd.rs"]
mod geo_cmd;

/// Exit status for an invalid policy or argument value.
const EXIT_INVALID: u8 = 64;
/// Exit status for an unreadable input file.
const EXIT_NO_INPUT: u8 = 66;

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

/// `--geoip-db` and `--geoip-field`.
#[derive(Args)]
struct GeoArgs {
    /// A MaxMind DB (.mmdb) country database; repeat for separate IPv4 and IPv6 files.
    #[arg(long = "geoip-db", value_name = "FILE")]
    geoip_db: Vec<PathBuf>,
    /// The record field holding the country code, as a dotted path (default: detected).
    #[arg(long = "geoip-field", value_name = "FIELD")]
    geoip_field: Option<String>,
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
    /// Explain the verdict of a policy for one destination.
    Explain {
        /// The policy YAML file.
        file: PathBuf,
        #[arg(
            long,
            value_name = "DESTINATION",
            help = "Destination: ADDR[:PORT][/tcp|udp], e.g. 198.51.100.7:443/tcp or [2001:db8::1]:53/udp"
        )]
        to: String,
        #[command(flatten)]
        geo: GeoArgs,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    #[command(flatten)]
    Operator(PolicyOperatorCommand),
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// Reads and validates `file`, printing diagnostics; `Err` carries the exit status.
fn load(file: &Path) -> Result<Policy, ExitCode> {
    let shown = file.display();
    let src = std::fs::read_to_string(file).map_err(|e| {
        eprintln!("{shown}: error: cannot read policy: {e}");
        ExitCode::from(EXIT_NO_INPUT)
    })?;
    let policy = parse_policy(&src).map_err(|diagnostics| {
        for d in &diagnostics {
            eprintln!("{shown}:{d}");
        }
        eprintln!("{shown}: {}", plural(diagnostics.len(), "error"));
        ExitCode::from(EXIT_INVALID)
    })?;
    Ok(policy)
}

/// Compiles `policy` for the kernel, printing the error; `Err` carries the exit status.
fn compile_or_report(file: &Path, policy: &Policy, geo: Option<&GeoDb>) -> Result<Compiled, ExitCode> {
    compile(policy, geo).map_err(|e| {
        let shown = file.display();
        eprintln!("{shown}: error: {e}");
        eprintln!("{shown}: 1 error");
        ExitCode::from(EXIT_INVALID)
    })
}

fn check(file: &Path, geo: &GeoArgs) -> Result<(), ExitCode> {
    let policy = load(file)?;
    let db = geo_cmd::open_db(&geo.geoip_db, geo.geoip_field.as_deref())?;
    // Without a database, compile against an empty one: that checks every limit except the
    // number of geo entries, which depends on the database.
    let empty = GeoDb::from_networks(Vec::new(), Vec::new());
    let unresolved = db.is_none() && policy.references_countries();
    let compiled = compile_or_report(file, &policy, db.as_ref().or(Some(&empty)))?;
    let mut summary = format!(
        "{}: ok (policy {}, {}, {}",
        file.display(),
        policy.name,
        plural(policy.rules.len(), "rule"),
        plural(compiled.prefix_count(), "prefix").replace("prefixs", "prefixes")
    );
    if let Some(db) = &db {
        summary.push_str(&format!(
            ", {})",
            plural(compiled.geo_entries(), "geo entry").replace("entrys", "entries")
        ));
        println!("{summary}");
        println!("geo-IP database: {}", geo_cmd::describe_db(db));
    } else {
        println!("{summary})");
    }
    if unresolved {
        println!(
            "note: the policy names {}; countries are resolved when a database is given (--geoip-db FILE)",
            plural(policy.geo_countries().len(), "country").replace("countrys", "countries")
        );
    }
    if let Some(x) = &policy.exfiltration {
        println!("exfiltration: {x}");
        if policy.exfiltration_needs_geo() && db.is_none() {
            println!("note: approved sinks name countries: the agent needs --geoip-db to run this policy");
        }
    }
    Ok(())
}

fn verdict_text(decision: &Decision) -> &'static str {
    match (decision.action, decision.audited) {
        (_, true) => "allow (audit: would deny)",
        (Action::Allow, false) => "allow",
        (Action::Deny, false) => "deny",
    }
}

fn decided_by_text(decision: &Decision) -> &'static str {
    match decision.decided_by {
        DecidedBy::CidrRule => "CIDR rule",
        DecidedBy::CountryRule => "country rule",
        DecidedBy::UnknownCountry => "unknownCountry (the address has no country)",
        DecidedBy::Default => "default action",
    }
}

fn explain(policy: &Policy, dest: &Destination, geo: Option<&GeoDb>, json: bool) -> anyhow::Result<()> {
    let decision = policy.evaluate_with_geo(dest, geo);
    let country = decision.country.map(|c| country_str(&c).to_owned());
    let rule = decision.rule.and_then(|id| policy.rule(id));
    let mut out = std::io::stdout().lock();
    if json {
        let value = serde_json::json!({
            "verdict": decision.action,
            "audited": decision.audited,
            "rule": rule.map(|r| serde_json::json!({ "id": r.id, "name": r.name })),
            "prefix": decision.matched_prefix.map(|p| p.to_string()),
            "country": country,
            "geo_network": decision.geo_network.map(|n| n.to_string()),
            "decided_by": decision.decided_by,
            "encryption_required": decision.encryption_required,
            "encryption_reason": decision.encryption_reason,
            "destination": { "addr": dest.addr, "port": dest.port, "protocol": dest.protocol },
            "mode": policy.mode,
            "explanation": decision.explanation,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
        return Ok(());
    }
    writeln!(out, "verdict: {}", verdict_text(&decision))?;
    match (rule, policy.unknown_country) {
        (Some(r), _) => writeln!(out, "rule: {} (id {})", r.name, r.id)?,
        (None, Some(action)) if decision.decided_by == DecidedBy::UnknownCountry => {
            writeln!(out, "rule: unknownCountry ({action})")?
        }
        (None, _) => writeln!(out, "rule: default action ({})", policy.default_action)?,
    }
    match decision.matched_prefix {
        Some(p) => writeln!(out, "prefix: {p}")?,
        None => writeln!(out, "prefix: none")?,
    }
    if geo.is_some() || policy.references_countries() {
        match (decision.country, decision.geo_network) {
            (Some(c), Some(net)) => {
                let name = country_name(c).map(|n| format!(" ({n})")).unwrap_or_default();
                writeln!(out, "country: {}{name}, database network {net}", country_str(&c))?
            }
            _ if geo.is_some() => writeln!(out, "country: unknown (no database record)")?,
            _ => writeln!(out, "country: unknown (no database given)")?,
        }
        writeln!(out, "decided by: {}", decided_by_text(&decision))?;
    }
    match &decision.encryption_reason {
        Some(reason) => writeln!(out, "encryption: required ({reason})")?,
        None => writeln!(out, "encryption: not required")?,
    }
    writeln!(out, "destination: {dest}")?;
    writeln!(out, "mode: {}", policy.mode)?;
    writeln!(out, "explanation:")?;
    for (i, step) in decision.explanation.iter().enumerate() {
        writeln!(out, "  {}. {step}", i + 1)?;
    }
    Ok(())
}

fn explain_command(file: &Path, to: &str, geo: &GeoArgs, json: bool) -> anyhow::Result<ExitCode> {
    let policy = match load(file) {
        Ok(policy) => policy,
        Err(code) => return Ok(code),
    };
    let dest: Destination = match to.parse() {
        Ok(dest) => dest,
        Err(e) => {
            eprintln!("error: --to: {e}");
            return Ok(ExitCode::from(EXIT_INVALID));
        }
    };
    if geo.geoip_db.is_empty() && policy.references_countries() {
        eprintln!("{}: error: {}", file.display(), geo_cmd::database_required(&policy));
        return Ok(ExitCode::from(EXIT_INVALID));
    }
    let db = match geo_cmd::open_db(&geo.geoip_db, geo.geoip_field.as_deref()) {
        Ok(db) => db,
        Err(code) => return Ok(code),
    };
    if let Err(code) = compile_or_report(file, &policy, db.as_ref()) {
        return Ok(code);
    }
    explain(&policy, &dest, db.as_ref(), json).context("writing the explanation")?;
    Ok(ExitCode::SUCCESS)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Policy { command: PolicyCommand::Check { file, geo } } => {
            if let Err(code) = check(&file, &geo) {
                return Ok(code);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Policy { command: PolicyCommand::Explain { file, to, geo, json } } => {
            explain_command(&file, &to, &geo, json)
        }
        Command::Geo { command: GeoCommand::Lookup { addr, db, field, json } } => {
            geo_cmd::lookup(&addr, &db, field.as_deref(), json)
        }
        Command::Policy { command: PolicyCommand::Operator(command) } => {
            operator(|runtime| runtime.block_on(cli::run_policy(&cli.server, command)))
        }
        Command::Operator(command) => {
            operator(|runtime| runtime.block_on(cli::run_operator(&cli.server, command)))
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "ringfence", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Runs an operator command on a runtime; a failure prints `error: ...` (what to do) and exits
/// with its status.
fn operator(
    f: impl FnOnce(&tokio::runtime::Runtime) -> Result<(), cli::CliError>,
) -> anyhow::Result<ExitCode> {
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
