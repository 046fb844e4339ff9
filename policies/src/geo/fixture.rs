//! Writing small country databases for tests (feature `fixtures`, always in unit tests).
//!
//! ```text
//! use ringfence_policy::geo::fixture::{write_mmdb, Layout};
//! write_mmdb(&dir.join("geo.mmdb"),
//!     &[("198.51.100.0/24".parse()?, "DE"), ("2001:db8::/32".parse()?, "FR")],
//!     Layout::GeoIp2Country, 6)?;
//! ```

use std::path::Path;
use std::time::{Duration, SystemTime};

use ipnet::IpNet;
use mmdb_writer::{IpVersion, Value, Writer};

use super::error::GeoError;

/// `database_type` written by [`write_mmdb`].
pub const DATABASE_TYPE: &str = "Ringfence-Test-Country";
/// `build_epoch` written by [`write_mmdb`] (2025-01-01T00:00:00Z), so fixtures are
/// byte-for-byte reproducible.
pub const BUILD_EPOCH: u64 = 1_735_689_600;

/// The record layout of a fixture database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// GeoIP2/GeoLite2 Country: `{"country": {"iso_code": "US"}, "registered_country": {...}}`.
    GeoIp2Country,
    /// The flat iptoasn layout: `{"country_code": "US"}`.
    Flat,
}

/// Writes a `.mmdb` file mapping each network to a country string (written as given, so
/// invalid codes can be tested too). `ip_version` 6 stores IPv4 networks in the IPv4 subtree
/// (`::/96`, with the usual IPv4-mapped/6to4/Teredo aliases); 4 accepts IPv4 networks only.
/// Later entries win where networks overlap.
pub fn write_mmdb(
    path: &Path,
    networks: &[(IpNet, &str)],
    layout: Layout,
    ip_version: u16,
) -> Result<(), GeoError> {
    let fail = |reason: String| GeoError::Invalid { path: path.to_path_buf(), reason };
    let version = match ip_version {
        4 => IpVersion::V4,
        6 => IpVersion::V6,
        v => return Err(fail(format!("cannot write fixture: ip_version {v}, expected 4 or 6"))),
    };
    let mut writer = Writer::builder(DATABASE_TYPE)
        .ip_version(version)
        .description(&[("en", "Ringfence test country database")])
        .build_epoch(SystemTime::UNIX_EPOCH + Duration::from_secs(BUILD_EPOCH))
        .build();
    for &(net, country) in networks {
        let value = match layout {
            Layout::GeoIp2Country => {
                let iso = || Value::map([("iso_code", Value::from(country))]);
                Value::map([("country", iso()), ("registered_country", iso())])
            }
            Layout::Flat => Value::map([("country_code", Value::from(country))]),
        };
        writer
            .insert_value(net, value)
            .map_err(|e| fail(format!("cannot write fixture network {net}: {e}")))?;
    }
    let bytes = writer.to_bytes().map_err(|e| fail(format!("cannot write fixture: {e}")))?;
    std::fs::write(path, bytes).map_err(|source| GeoError::Io { path: path.to_path_buf(), source })
}
