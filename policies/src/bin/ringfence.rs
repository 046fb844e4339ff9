//! `ringfence` command-line tool.
//!
//! * `ringfence policy check FILE`: validate and compile a policy. Exit 0 if valid, 64 if not
//!   (every diagnostic on stderr as `FILE:LINE:COL: error: MSG`), 66 if the file is unreadable.
//! * `ringfence policy explain FILE --to ADDR[:PORT][/tcp|udp] [--json]`: show the verdict for a
//!   destination and why. Exit 0 whatever the verdict, 64 for an invalid policy or `--to`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use ringfence_policy::{compile, parse_policy, Action, Compiled, Decision, Destination, Policy};

/// Exit status for an invalid policy or argument value.
const EXIT_INVALID: u8 = 64;
/// Exit status for an unreadable input file.
const EXIT_NO_INPUT: u8 = 66;

#[derive(Parser)]
#[command(name = "ringfence", version, about = "Ringfence eBPF egress firewall")]
struct Cli {
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
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Validate a policy file and check that it compiles for the kernel.
    Check {
        /// The policy YAML file.
        file: PathBuf,
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
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// Reads, validates and compiles `file`, printing diagnostics; `Err` carries the exit status.
fn load(file: &Path) -> Result<(Policy, Compiled), ExitCode> {
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
    let compiled = compile(&policy).map_err(|e| {
        eprintln!("{shown}: error: {e}");
        eprintln!("{shown}: 1 error");
        ExitCode::from(EXIT_INVALID)
    })?;
    Ok((policy, compiled))
}

fn verdict_text(decision: &Decision) -> &'static str {
    match (decision.action, decision.audited) {
        (_, true) => "allow (audit: would deny)",
        (Action::Allow, false) => "allow",
        (Action::Deny, false) => "deny",
    }
}

fn explain(policy: &Policy, dest: &Destination, json: bool) -> anyhow::Result<()> {
    let decision = policy.evaluate(dest);
    let rule = decision.rule.and_then(|id| policy.rule(id));
    let mut out = std::io::stdout().lock();
    if json {
        let value = serde_json::json!({
            "verdict": decision.action,
            "audited": decision.audited,
            "rule": rule.map(|r| serde_json::json!({ "id": r.id, "name": r.name })),
            "prefix": decision.matched_prefix.map(|p| p.to_string()),
            "destination": { "addr": dest.addr, "port": dest.port, "protocol": dest.protocol },
            "mode": policy.mode,
            "explanation": decision.explanation,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
        return Ok(());
    }
    writeln!(out, "verdict: {}", verdict_text(&decision))?;
    match rule {
        Some(r) => writeln!(out, "rule: {} (id {})", r.name, r.id)?,
        None => writeln!(out, "rule: default action ({})", policy.default_action)?,
    }
    match decision.matched_prefix {
        Some(p) => writeln!(out, "prefix: {p}")?,
        None => writeln!(out, "prefix: none")?,
    }
    writeln!(out, "destination: {dest}")?;
    writeln!(out, "mode: {}", policy.mode)?;
    writeln!(out, "explanation:")?;
    for (i, step) in decision.explanation.iter().enumerate() {
        writeln!(out, "  {}. {step}", i + 1)?;
    }
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let Command::Policy { command } = cli.command;
    match command {
        PolicyCommand::Check { file } => {
            let (policy, compiled) = match load(&file) {
                Ok(loaded) => loaded,
                Err(code) => return Ok(code),
            };
            println!(
                "{}: ok (policy {}, {}, {})",
                file.display(),
                policy.name,
                plural(policy.rules.len(), "rule"),
                plural(compiled.prefix_count(), "prefix").replace("prefixs", "prefixes")
            );
        }
        PolicyCommand::Explain { file, to, json } => {
            let (policy, _compiled) = match load(&file) {
                Ok(loaded) => loaded,
                Err(code) => return Ok(code),
            };
            let dest: Destination = match to.parse() {
                Ok(dest) => dest,
                Err(e) => {
                    eprintln!("error: --to: {e}");
                    return Ok(ExitCode::from(EXIT_INVALID));
                }
            };
            explain(&policy, &dest, json).context("writing the explanation")?;
        }
    }
    Ok(ExitCode::SUCCESS)
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
