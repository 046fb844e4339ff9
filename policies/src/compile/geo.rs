//! Compilation of country rules into geo trie entries: one [`GeoEntry`] per database network of
//! a country some rule names (plus, with `unknownCountry`, one per network of every other
//! country, to tell known from unknown addresses), then aggregated: two halves of a parent
//! prefix with identical entries become the parent, repeatedly.

use std::collections::HashMap;

use ringfence_common::{
    country_code, GeoEntry, MatchItem, MatchList, MAX_GEO_V4, MAX_GEO_V6, MAX_ITEMS, NO_LIST,
};

use super::error::CompileError;
use super::trie::{intern, items_of};
use crate::countries::{country_str, CountryCode};
use crate::geo::GeoDb;
use crate::model::{Action, Policy};
use crate::prefix::{inside_v4_mapped, net_key, to_bytes};

/// Geo trie entries of one family: (network address bytes, prefix length, entry), sorted.
pub(super) type GeoTable<const N: usize> = Vec<([u8; N], u32, GeoEntry)>;

/// Index of an uppercase two-letter code in a 26 x 26 table.
fn slot(code: CountryCode) -> Option<usize> {
    let [a, b] = code;
    (a.is_ascii_uppercase() && b.is_ascii_uppercase())
        .then(|| usize::from(a - b'A') * 26 + usize::from(b - b'A'))
}

/// The match list of the rules of `action` naming `code`, or `NO_LIST` if none does.
fn country_list(
    policy: &Policy,
    code: CountryCode,
    action: Action,
    dedup: &mut HashMap<MatchList, u32>,
    lists: &mut Vec<MatchList>,
) -> Result<u32, CompileError> {
    let rules: Vec<_> =
        policy.rules.iter().filter(|r| r.action == action && r.countries.contains(&code)).collect();
    if rules.is_empty() {
        return Ok(NO_LIST);
    }
    let items: Vec<MatchItem> = rules.iter().flat_map(|r| items_of(r)).collect();
    if items.len() > MAX_ITEMS {
        return Err(CompileError::TooManyCountryItems {
            country: country_str(&code).to_owned(),
            action,
            items: items.len(),
            rules: rules.iter().map(|r| format!("{} \"{}\"", r.id, r.name)).collect(),
            max: MAX_ITEMS,
        });
    }
    let mut list = MatchList { len: items.len() as u32, ..MatchList::default() };
    list.items[..items.len()].copy_from_slice(&items);
    Ok(intern(list, dedup, lists))
}

/// Merges sibling prefixes with identical entries into their parent, repeatedly. `sorted` must
/// be sorted by address and disjoint; `width` is 32 or 128.
fn aggregate<V: Copy + PartialEq>(sorted: Vec<(u128, u32, V)>, width: u32) -> Vec<(u128, u32, V)> {
    let mut out: Vec<(u128, u32, V)> = Vec::with_capacity(sorted.len());
    for item in sorted {
        out.push(item);
        while let [.., (a_addr, a_len, a_entry), (b_addr, b_len, b_entry)] = out[..] {
            let bit = if a_len == 0 { 0 } else { 1u128 << (width - a_len) };
            let siblings = a_len == b_len && a_len > 0 && a_addr & bit == 0 && b_addr == a_addr | bit;
            if !(siblings && a_entry == b_entry) {
                break;
            }
            out.truncate(out.len() - 2);
            out.push((a_addr, a_len - 1, a_entry));
        }
    }
    out
}

fn table<const N: usize>(
    networks: impl Iterator<Item = (u128, u32, CountryCode)>,
    entries: &[Option<GeoEntry>],
    other: Option<GeoEntry>,
    max: u32,
) -> Result<GeoTable<N>, CompileError> {
    let mut loaded: Vec<(u128, u32, GeoEntry)> = networks
        .filter_map(|(addr, len, code)| {
            let entry = slot(code).and_then(|i| entries[i]).or(other)?;
            Some((addr, len, entry))
        })
        .collect();
    loaded.sort_unstable_by_key(|&(addr, len, _)| (addr, len));
    let width = (N * 8) as u32;
    let merged = aggregate(loaded, width);
    if merged.len() > max as usize {
        let family = if N == 4 { 4 } else { 6 };
        return Err(CompileError::TooManyGeoEntries { family, count: merged.len(), max: max as usize });
    }
    Ok(merged.into_iter().map(|(addr, len, entry)| (to_bytes(addr), len, entry)).collect())
}

/// Builds both geo tables for `policy` from `geo`, adding the country match lists to `lists`.
pub(super) fn build_geo(
    policy: &Policy,
    geo: &GeoDb,
    dedup: &mut HashMap<MatchList, u32>,
    lists: &mut Vec<MatchList>,
) -> Result<(GeoTable<4>, GeoTable<16>), CompileError> {
    let mut entries: Vec<Option<GeoEntry>> = vec![None; 26 * 26];
    for code in policy.countries() {
        let deny_list = country_list(policy, code, Action::Deny, dedup, lists)?;
        let allow_list = country_list(policy, code, Action::Allow, dedup, lists)?;
        let entry = GeoEntry { deny_list, allow_list, country: country_code(code), _reserved: 0 };
        if let Some(i) = slot(code) {
            entries[i] = Some(entry);
        }
    }
    // Networks of countries no rule names only matter for telling "unknown" addresses apart.
    let other = policy.unknown_country.map(|_| GeoEntry {
        deny_list: NO_LIST,
        allow_list: NO_LIST,
        country: 0,
        _reserved: 0,
    });
    let with_key = |(key, len): (u128, u32), code: CountryCode| (key, len, code);
    let v4 = geo.networks_v4().iter().map(|(n, c)| with_key(net_key(*n), *c));
    let v6 = geo
        .networks_v6()
        .iter()
        // The kernel decides IPv4-mapped addresses as IPv4; such networks are never looked up.
        .filter(|(n, _)| !inside_v4_mapped(n))
        .map(|(n, c)| with_key(net_key(*n), *c));
    Ok((table::<4>(v4, &entries, other, MAX_GEO_V4)?, table::<16>(v6, &entries, other, MAX_GEO_V6)?))
}
