//! Reading one `.mmdb` file: metadata checks, the bounded walk over every network, country
//! field detection and decoding. The third-party decoder runs behind `catch_unwind`.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use maxminddb::{LookupResult, MaxMindDbError, PathElement, Reader, WithinOptions};

use super::error::GeoError;
use super::table::carve_excluded_v6;
use crate::countries::CountryCode;

/// The field GeoIP2/GeoLite2/DB-IP databases keep the country in; falls back to
/// [`REGISTERED_COUNTRY`] for networks without `country`.
const COUNTRY_ISO: &str = "country.iso_code";
const REGISTERED_COUNTRY: &str = "registered_country.iso_code";
/// Fields tried, in order, when none is given.
const KNOWN_FIELDS: [&str; 4] = [COUNTRY_ISO, REGISTERED_COUNTRY, "country_code", "country"];

/// One file's contribution.
#[derive(Debug)]
pub(super) struct Loaded {
    pub database_type: String,
    pub build_epoch: u64,
    pub ip_version: u16,
    pub field: String,
    pub skipped: usize,
    pub v4: Vec<(Ipv4Net, CountryCode)>,
    pub v6: Vec<(Ipv6Net, CountryCode)>,
}

pub(super) fn load_file(path: &Path, field: Option<&str>) -> Result<Loaded, GeoError> {
    let bytes = std::fs::read(path).map_err(|source| GeoError::Io { path: path.to_path_buf(), source })?;
    if bytes.is_empty() {
        return Err(GeoError::Empty { path: path.to_path_buf() });
    }
    match catch_unwind(AssertUnwindSafe(|| load_bytes(path, bytes, field))) {
        Ok(result) => result,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(invalid(path, format!("the MaxMind DB decoder crashed on it ({what}); the file is corrupt")))
        }
    }
}

fn invalid(path: &Path, reason: impl Into<String>) -> GeoError {
    GeoError::Invalid { path: path.to_path_buf(), reason: reason.into() }
}

fn load_bytes(path: &Path, bytes: Vec<u8>, field: Option<&str>) -> Result<Loaded, GeoError> {
    let len = bytes.len();
    let reader = Reader::from_source(bytes).map_err(|e| {
        let e = e.to_string();
        if e.contains("could not find MaxMind DB metadata") {
            invalid(path, format!("no MaxMind DB metadata section found in its {len} bytes (not a .mmdb file, or a truncated one)"))
        } else {
            invalid(path, format!("{e} (file of {len} bytes: truncated or corrupt)"))
        }
    })?;
    let md = reader.metadata();
    if !matches!(md.ip_version, 4 | 6) {
        return Err(invalid(path, format!("metadata ip_version is {}, expected 4 or 6", md.ip_version)));
    }
    if !matches!(md.record_size, 24 | 28 | 32) {
        return Err(invalid(
            path,
            format!("metadata record_size is {}, expected 24, 28 or 32", md.record_size),
        ));
    }
    if md.node_count == 0 {
        return Err(invalid(path, "metadata node_count is 0"));
    }
    let tree_bytes = u64::from(md.node_count) * u64::from(md.record_size) / 4;
    if tree_bytes > len as u64 {
        return Err(invalid(path, format!("metadata node_count {} does not fit in the file", md.node_count)));
    }

    // Walk every network, including those without data so the walk can be bounded: a
    // well-formed tree of N nodes has at most N + 1 leaves (aliases are skipped by the walk).
    let node_count = md.node_count as usize;
    let limit = 2 * node_count + 2;
    let options = WithinOptions::default().include_networks_without_data();
    let walk = reader.networks(options).map_err(|e| invalid(path, e.to_string()))?;
    let mut networks: Vec<(IpNet, usize)> = Vec::new();
    let mut records: HashMap<usize, LookupResult<'_, Vec<u8>>> = HashMap::new();
    let mut order: Vec<usize> = Vec::new();
    for (visited, item) in walk.enumerate() {
        if visited >= limit {
            return Err(invalid(
                path,
                format!(
                    "the search tree yields more than {limit} networks for {node_count} nodes \
                     (corrupt tree: shared or cyclic nodes)"
                ),
            ));
        }
        let item = item.map_err(|e| invalid(path, format!("search tree: {e}")))?;
        let Some(offset) = item.offset() else { continue };
        let net = item.network().map_err(|e| invalid(path, format!("search tree: {e}")))?;
        let net = IpNet::new(net.network(), net.prefix())
            .map_err(|e| invalid(path, format!("search tree: bad network: {e}")))?;
        networks.push((net, offset));
        records.entry(offset).or_insert_with(|| {
            order.push(offset);
            item
        });
    }

    let field = match field {
        Some(f) => {
            let f = f.trim();
            if f.is_empty() || f.split('.').any(str::is_empty) {
                return Err(invalid(
                    path,
                    format!("country field `{f}` is not a dotted path like `country.iso_code`"),
                ));
            }
            if !order.is_empty() && !any_has(path, &records, &order, f)? {
                return Err(GeoError::NoCountryField {
                    path: path.to_path_buf(),
                    tried: vec![f.to_string()],
                });
            }
            f.to_string()
        }
        None => {
            if order.is_empty() {
                return Err(GeoError::Empty { path: path.to_path_buf() });
            }
            let mut found = None;
            for candidate in KNOWN_FIELDS {
                if any_has(path, &records, &order, candidate)? {
                    found = Some(candidate.to_string());
                    break;
                }
            }
            found.ok_or_else(|| GeoError::NoCountryField {
                path: path.to_path_buf(),
                tried: KNOWN_FIELDS.iter().map(|s| s.to_string()).collect(),
            })?
        }
    };

    let mut codes: HashMap<usize, Option<CountryCode>> = HashMap::with_capacity(order.len());
    for &offset in &order {
        let record = &records[&offset];
        let mut value = decode_field(path, record, &field)?;
        if value.is_none() && field == COUNTRY_ISO {
            value = decode_field(path, record, REGISTERED_COUNTRY)?;
        }
        codes.insert(offset, value.as_deref().and_then(parse_code));
    }

    let (mut v4, mut v6, mut skipped) = (Vec::new(), Vec::new(), 0);
    for (net, offset) in networks {
        let Some(code) = codes[&offset] else {
            skipped += 1;
            continue;
        };
        match net {
            IpNet::V4(n) => v4.push((n, code)),
            IpNet::V6(n) => {
                // An IPv6 database without an IPv4 subtree: a network covering all of ::/96
                // answers every IPv4 lookup.
                if n.contains(&Ipv6Net::new(0u128.into(), 96).expect("valid prefix")) {
                    v4.push((Ipv4Net::default(), code));
                }
                carve_excluded_v6(n, &mut |piece| v6.push((piece, code)));
            }
        }
    }
    if v4.is_empty() && v6.is_empty() {
        return Err(GeoError::Empty { path: path.to_path_buf() });
    }
    Ok(Loaded {
        database_type: md.database_type.clone(),
        build_epoch: md.build_epoch,
        ip_version: md.ip_version,
        field,
        skipped,
        v4,
        v6,
    })
}

/// Whether any record has a string at `field`.
fn any_has(
    path: &Path,
    records: &HashMap<usize, LookupResult<'_, Vec<u8>>>,
    order: &[usize],
    field: &str,
) -> Result<bool, GeoError> {
    for offset in order {
        if decode_field(path, &records[offset], field)?.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The string at the dotted `field` of a record; `None` when absent or not a string.
/// Corruption (as opposed to a type mismatch) is an error.
fn decode_field(
    path: &Path,
    record: &LookupResult<'_, Vec<u8>>,
    field: &str,
) -> Result<Option<String>, GeoError> {
    let elements: Vec<PathElement<'_>> = field
        .split('.')
        .map(|s| s.parse::<usize>().map_or(PathElement::Key(s), PathElement::Index))
        .collect();
    match record.decode_path::<String>(&elements) {
        Ok(v) => Ok(v),
        Err(MaxMindDbError::Decoding { .. }) => Ok(None),
        Err(e) => Err(invalid(path, format!("data section: {e}"))),
    }
}

/// Two ASCII letters, uppercased; anything else (e.g. `"None"`, `"-"`, `""`) is rejected.
pub(super) fn parse_code(s: &str) -> Option<CountryCode> {
    match s.as_bytes() {
        &[a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
            Some([a.to_ascii_uppercase(), b.to_ascii_uppercase()])
        }
        _ => None,
    }
}
