//! Geo-IP databases (MaxMind DB format): reading, lookup, test fixtures.
//!
//! [`GeoDb::open`] reads one or two `.mmdb` files (GeoIP2/GeoLite2 Country or City, DB-IP, or
//! the flat iptoasn `{"country_code": "US"}` layout), walks every network in them and keeps a
//! compact, sorted, disjoint table per address family that maps each network to a two-letter
//! country code. Adjacent networks are not aggregated here: the policy compiler does that per
//! policy.
//!
//! Corrupt input is rejected with a [`GeoError`] naming the file; the third-party decoder runs
//! behind `catch_unwind` and the tree walk is bounded by the node count in the metadata.
//!
//! The parts: `reader` reads one file (using `table` and `error`), `table` keeps sorted,
//! disjoint network tables, `fixture` writes test databases; this module merges the files
//! into a [`GeoDb`] and answers lookups. The parts never use this module.

mod error;
mod reader;
mod table;

#[cfg(any(test, feature = "fixtures"))]
pub mod fixture;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

pub use crate::countries::CountryCode;
use crate::prefix::normalize_addr;
pub use error::GeoError;
use reader::Loaded;

/// Describes the database(s) a [`GeoDb`] was built from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GeoDbInfo {
    /// The files read, in the order given (empty for an in-memory database).
    pub paths: Vec<PathBuf>,
    /// `database_type` from the metadata; distinct values of several files joined by `", "`.
    pub database_type: String,
    /// Build time (seconds since the Unix epoch); the oldest one when several files were read.
    pub build_epoch: u64,
    /// `ip_version` (4 or 6) of each file, in file order.
    pub ip_versions: Vec<u16>,
    /// Number of IPv4 networks in the table.
    pub networks_v4: usize,
    /// Number of IPv6 networks in the table.
    pub networks_v6: usize,
    /// The record field the country code was read from, as a dotted path, e.g.
    /// `"country.iso_code"` or `"country_code"`; distinct values of several files joined by
    /// `", "`.
    pub field: String,
    /// Networks that had data but no usable country code (missing field, or a value that is
    /// not two ASCII letters, e.g. `"None"` or `"-"`): skipped, counted here.
    pub skipped_networks: usize,
}

impl GeoDbInfo {
    /// The build date as `YYYY-MM-DD` (UTC).
    pub fn build_date(&self) -> String {
        let days = i128::from(self.build_epoch / 86_400);
        let (y, m, d) = civil_from_days(days);
        format!("{y:04}-{m:02}-{d:02}")
    }
}

/// Converts days since 1970-01-01 to a proleptic Gregorian (year, month, day).
/// (Howard Hinnant's `civil_from_days`.)
fn civil_from_days(days: i128) -> (i128, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i128::from(m <= 2);
    (y, m, d)
}

/// A country geo-IP table: sorted, disjoint networks per family, each with a country code.
#[derive(Debug, Clone)]
pub struct GeoDb {
    info: GeoDbInfo,
    v4: Vec<(Ipv4Net, CountryCode)>,
    v6: Vec<(Ipv6Net, CountryCode)>,
}

impl GeoDb {
    /// Opens one database with IPv4 and IPv6 data, or several (e.g. one IPv4 file and one IPv6
    /// file) and merges them. Where files overlap, the file given first wins.
    ///
    /// `field` names the record field holding the country code as a dotted path (e.g.
    /// `"country.iso_code"`, `"country_code"`; a numeric segment indexes an array). `None`
    /// detects it: `country.iso_code` (GeoIP2/GeoLite2/DB-IP), then `country_code` (iptoasn).
    /// With `country.iso_code` (detected or given), a network without `country` falls back to
    /// `registered_country.iso_code`.
    ///
    /// With no paths, the database is empty. Files are read whole into memory while loading and
    /// dropped afterwards; only the tables are kept.
    pub fn open(paths: &[PathBuf], field: Option<&str>) -> Result<GeoDb, GeoError> {
        let mut loaded = Vec::with_capacity(paths.len());
        for path in paths {
            loaded.push(reader::load_file(path, field)?);
        }
        Ok(merge(paths, loaded))
    }

    /// Builds a database from networks (for tests). Host bits are cleared, the tables are
    /// sorted, and a network overlapping an earlier one in the list is dropped so the tables
    /// stay disjoint. `info().database_type` is `"in-memory"`.
    pub fn from_networks(v4: Vec<(Ipv4Net, CountryCode)>, v6: Vec<(Ipv6Net, CountryCode)>) -> GeoDb {
        let v4 = table::disjoint_v4(v4.into_iter().map(|(n, c)| (n.trunc(), c)).collect());
        let v6 = table::disjoint_v6(v6.into_iter().map(|(n, c)| (n.trunc(), c)).collect());
        let info = GeoDbInfo {
            paths: Vec::new(),
            database_type: "in-memory".to_string(),
            build_epoch: 0,
            ip_versions: Vec::new(),
            networks_v4: v4.len(),
            networks_v6: v6.len(),
            field: String::new(),
            skipped_networks: 0,
        };
        GeoDb { info, v4, v6 }
    }

    /// What was loaded.
    pub fn info(&self) -> &GeoDbInfo {
        &self.info
    }

    /// The network containing `addr` and its country, if any. An IPv4-mapped IPv6 address
    /// (`::ffff:a.b.c.d`) is looked up as IPv4 and answered with an IPv4 network.
    pub fn lookup(&self, addr: IpAddr) -> Option<(IpNet, CountryCode)> {
        match normalize_addr(addr) {
            IpAddr::V4(a) => table::find(&self.v4, |n| n.network() <= a, |n| n.contains(&a))
                .map(|(n, c)| (IpNet::V4(n), c)),
            IpAddr::V6(a) => table::find(&self.v6, |n| n.network() <= a, |n| n.contains(&a))
                .map(|(n, c)| (IpNet::V6(n), c)),
        }
    }

    /// IPv4 networks with a country, sorted by address, disjoint.
    pub fn networks_v4(&self) -> &[(Ipv4Net, CountryCode)] {
        &self.v4
    }

    /// IPv6 networks with a country, sorted by address, disjoint. Excludes the IPv4 subtree of
    /// an IPv6 database (`::/96`) and the IPv4 aliases (`::ffff:0:0/96`, `2002::/16`), whose
    /// data is the IPv4 data again.
    pub fn networks_v6(&self) -> &[(Ipv6Net, CountryCode)] {
        &self.v6
    }
}

/// Merges the loaded files (in the order given: the first file wins where they overlap).
fn merge(paths: &[PathBuf], loaded: Vec<Loaded>) -> GeoDb {
    let mut types = Vec::new();
    let mut fields = Vec::new();
    let mut seen_types = BTreeSet::new();
    let mut seen_fields = BTreeSet::new();
    let mut build_epoch: Option<u64> = None;
    let mut ip_versions = Vec::new();
    let mut skipped = 0;
    let mut layers_v4 = Vec::new();
    let mut layers_v6 = Vec::new();
    for l in loaded {
        if seen_types.insert(l.database_type.clone()) {
            types.push(l.database_type);
        }
        if seen_fields.insert(l.field.clone()) {
            fields.push(l.field);
        }
        build_epoch = Some(build_epoch.map_or(l.build_epoch, |e| e.min(l.build_epoch)));
        ip_versions.push(l.ip_version);
        skipped += l.skipped;
        layers_v4.push(l.v4);
        layers_v6.push(l.v6);
    }
    let v4 = table::overlay(layers_v4);
    let v6 = table::overlay(layers_v6);
    let info = GeoDbInfo {
        paths: paths.to_vec(),
        database_type: types.join(", "),
        build_epoch: build_epoch.unwrap_or(0),
        ip_versions,
        networks_v4: v4.len(),
        networks_v6: v6.len(),
        field: fields.join(", "),
        skipped_networks: skipped,
    };
    GeoDb { info, v4, v6 }
}
