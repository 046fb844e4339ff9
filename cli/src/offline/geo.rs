//! `ringfence geo ...` and the `--geoip-db` handling shared by the policy commands.

use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use ringfence_policy::countries::{country_name, country_str};
use ringfence_policy::geo::GeoDb;
use ringfence_policy::Policy;

use crate::client::{EXIT_NO_INPUT, EXIT_USAGE as EXIT_INVALID};

/// `--geoip-db` and `--geoip-field`.
#[derive(Args)]
pub struct GeoArgs {
    /// A MaxMind DB (.mmdb) country database; repeat for separate IPv4 and IPv6 files.
    #[arg(long = "geoip-db", value_name = "FILE")]
    pub geoip_db: Vec<PathBuf>,
    /// The record field holding the country code, as a dotted path (default: detected).
    #[arg(long = "geoip-field", value_name = "FIELD")]
    pub geoip_field: Option<String>,
}

/// Opens the databases given with `--geoip-db`/`--db`; `Ok(None)` if none was given. Prints the
/// error (which names the file) and returns exit status 66 on failure.
pub fn open_db(paths: &[PathBuf], field: Option<&str>) -> Result<Option<GeoDb>, ExitCode> {
    if paths.is_empty() {
        return Ok(None);
    }
    GeoDb::open(paths, field).map(Some).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(EXIT_NO_INPUT)
    })
}

/// Why `explain` needs `--geoip-db` for `policy`.
pub fn database_required(policy: &Policy) -> String {
    let named = policy.geo_countries();
    let what = if named.is_empty() {
        "sets unknownCountry".to_owned()
    } else {
        format!("names countries ({})", named.iter().map(country_str).collect::<Vec<_>>().join(", "))
    };
    format!("the policy {what}; pass a geo-IP database with --geoip-db FILE to explain it")
}

/// One line describing a database: type, build date, network counts.
pub fn describe_db(db: &GeoDb) -> String {
    let info = db.info();
    format!(
        "{} built {}, {} networks ({} IPv4, {} IPv6)",
        info.database_type,
        info.build_date(),
        info.networks_v4 + info.networks_v6,
        info.networks_v4,
        info.networks_v6
    )
}

/// `ringfence geo lookup ADDR --db FILE... [--field F] [--json]`.
pub fn lookup(addr: &str, dbs: &[PathBuf], field: Option<&str>, json: bool) -> std::io::Result<ExitCode> {
    let parsed: IpAddr = match addr.trim().parse() {
        Ok(a) => a,
        Err(_) => {
            eprintln!("error: invalid address \"{addr}\" (expected an IPv4 or IPv6 address, e.g. 198.51.100.7 or 2001:db8::1)");
            return Ok(ExitCode::from(EXIT_INVALID));
        }
    };
    let db = match open_db(dbs, field) {
        Ok(Some(db)) => db,
        Ok(None) => unreachable!("clap requires --db"),
        Err(code) => return Ok(code),
    };
    let found = db.lookup(parsed);
    let info = db.info();
    let mut out = std::io::stdout().lock();
    if json {
        let value = serde_json::json!({
            "address": parsed,
            "country": found.map(|(_, c)| country_str(&c).to_owned()),
            "country_name": found.and_then(|(_, c)| country_name(c)),
            "network": found.map(|(n, _)| n.to_string()),
            "database": {
                "paths": info.paths,
                "type": info.database_type,
                "build_date": info.build_date(),
                "networks": info.networks_v4 + info.networks_v6,
                "networks_v4": info.networks_v4,
                "networks_v6": info.networks_v6,
                "field": info.field,
            },
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(out, "address: {parsed}")?;
    match found {
        Some((net, code)) => {
            let name = country_name(code).map(|n| format!(" ({n})")).unwrap_or_default();
            writeln!(out, "country: {}{name}", country_str(&code))?;
            writeln!(out, "network: {net}")?;
        }
        None => {
            writeln!(out, "country: no record")?;
            writeln!(out, "network: none")?;
        }
    }
    writeln!(out, "database: {}", describe_db(&db))?;
    Ok(ExitCode::SUCCESS)
}
