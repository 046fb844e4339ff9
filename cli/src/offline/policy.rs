//! `ringfence policy check|explain`: validate and compile a policy file, explain its verdict
//! for one destination (`--to`) or one incoming connection (`--from`). Offline: no control
//! plane involved.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use ringfence_policy::countries::{country_name, country_str};
use ringfence_policy::geo::GeoDb;
use ringfence_policy::{
    compile, compile_ingress, parse_policy, Action, Compiled, DecidedBy, Decision, Destination, Policy,
    Selector,
};

use super::geo::{self as geo_cmd, GeoArgs};
use crate::client::{EXIT_NO_INPUT, EXIT_USAGE as EXIT_INVALID};

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// Reads and validates `file`, printing diagnostics; `Err` carries the exit status.
pub(super) fn load(file: &Path) -> Result<Policy, ExitCode> {
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

/// `ringfence policy check`: prints the summary; `Err` carries the exit status.
pub fn check(file: &Path, geo: &GeoArgs) -> Result<(), ExitCode> {
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

fn explain(policy: &Policy, dest: &Destination, geo: Option<&GeoDb>, json: bool) -> std::io::Result<()> {
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

/// `ringfence policy explain`: the exit status, or the error writing the explanation.
pub fn explain_command(file: &Path, to: &str, geo: &GeoArgs, json: bool) -> std::io::Result<ExitCode> {
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
    explain(&policy, &dest, db.as_ref(), json)?;
    Ok(ExitCode::SUCCESS)
}

/// Offline there are no workloads: `from.workloads` selectors resolve to no address.
fn no_workloads(_: &Selector) -> Vec<ipnet::IpNet> {
    Vec::new()
}

/// `ringfence policy explain --from ADDR[:PORT][/proto]`: the verdict of `spec.ingress` for a
/// connection from ADDR to the workload's local PORT. The exit status, or the error writing.
pub fn explain_ingress_command(
    file: &Path,
    from: &str,
    geo: &GeoArgs,
    json: bool,
) -> std::io::Result<ExitCode> {
    let policy = match load(file) {
        Ok(policy) => policy,
        Err(code) => return Ok(code),
    };
    let conn: Destination = match from.parse() {
        Ok(conn) => conn,
        Err(e) => {
            eprintln!("error: --from: {e}");
            return Ok(ExitCode::from(EXIT_INVALID));
        }
    };
    if geo.geoip_db.is_empty() && policy.ingress_references_countries() {
        eprintln!(
            "{}: error: the ingress rules name countries; pass a geo-IP database with --geoip-db FILE to explain them",
            file.display()
        );
        return Ok(ExitCode::from(EXIT_INVALID));
    }
    let db = match geo_cmd::open_db(&geo.geoip_db, geo.geoip_field.as_deref()) {
        Ok(db) => db,
        Err(code) => return Ok(code),
    };
    if let Err(e) = compile_ingress(&policy, db.as_ref(), &no_workloads) {
        eprintln!("{}: error: ingress: {e}", file.display());
        return Ok(ExitCode::from(EXIT_INVALID));
    }
    let decision = policy.evaluate_ingress(&conn, db.as_ref(), &no_workloads);
    let rule = decision.rule.and_then(|id| policy.ingress_rule(id));
    let unresolved = policy.ingress.iter().any(|r| r.workloads.is_some());
    let mut out = std::io::stdout().lock();
    if json {
        let value = serde_json::json!({
            "direction": "ingress",
            "verdict": decision.action,
            "audited": decision.audited,
            "rule": rule.map(|r| serde_json::json!({ "id": r.id, "name": r.name })),
            "prefix": decision.matched_prefix.map(|p| p.to_string()),
            "country": decision.country.map(|c| country_str(&c).to_owned()),
            "decided_by": decision.decided_by,
            "from": { "addr": conn.addr, "local_port": conn.port, "protocol": conn.protocol },
            "mode": policy.mode,
            "workloads_resolved": false,
            "explanation": decision.explanation,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(out, "verdict: {}", verdict_text(&decision))?;
    match rule {
        Some(r) => writeln!(out, "rule: {} (ingress id {})", r.name, r.id)?,
        None => writeln!(out, "rule: defaultIngress ({})", policy.default_ingress)?,
    }
    match decision.matched_prefix {
        Some(p) => writeln!(out, "prefix: {p}")?,
        None => writeln!(out, "prefix: none")?,
    }
    if let Some(c) = decision.country {
        writeln!(out, "country: {}", country_str(&c))?;
    }
    let port =
        conn.port.map_or_else(|| format!("(none)/{}", conn.protocol), |p| format!("{p}/{}", conn.protocol));
    writeln!(out, "connection: from {} to local port {port}", conn.addr)?;
    writeln!(out, "mode: {}", policy.mode)?;
    if unresolved {
        writeln!(out, "note: from.workloads selectors are not resolved offline: they match no address here")?;
    }
    writeln!(out, "explanation:")?;
    for (i, step) in decision.explanation.iter().enumerate() {
        writeln!(out, "  {}. {step}", i + 1)?;
    }
    Ok(ExitCode::SUCCESS)
}
