//! Why a geo-IP database could not be loaded.

use std::path::PathBuf;

/// Why a geo-IP database could not be loaded. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    /// The file could not be read (missing, unreadable, a directory, ...).
    #[error("cannot read geo-IP database {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid MaxMind DB (`.mmdb`) file, or is corrupt.
    #[error("geo-IP database {} is not a valid MaxMind DB (.mmdb) file: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
    /// No record in the database has any of the country-code fields tried.
    #[error(
        "geo-IP database {} has no country code field: none of the records has {} \
         (name the field holding the two-letter country code explicitly, as a dotted path)",
        path.display(),
        tried.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(" or ")
    )]
    NoCountryField { path: PathBuf, tried: Vec<String> },
    /// The file is empty, or the database holds no network with a valid country code.
    #[error("geo-IP database {} is empty: it holds no network with a country code", path.display())]
    Empty { path: PathBuf },
}
