//! Compilation of country rules into geo trie entries: one [`GeoEntry`] per database network of
//! a country some rule names (plus, with `unknownCountry`, one per network of every other
//! country, to tell known from unknown addresses), then aggregated: two halves of a parent
//! prefix with identical entries become the parent, repeatedly.

use std::collections::HashMap;

use ringfence_common::{
    country_code, GeoEntry, MatchItem, MatchList, ACTION_ALLOW, ACTION_DENY, MAX_GEO_V4, MAX_GEO_V6,
    MAX_ITEMS, NO_LIST, RULE_DEFAULT, RULE_UNKNOWN_COUNTRY, UNKNOWN_ALLOW, UNKNOWN_DENY,
};

use crate::compile::{items_of, CompileError};
use crate::compile_lookup::key_of;
use crate::countries::{country_str, CountryCode};
use crate::geo::GeoDb;
use crate::model::{Action, Policy};

/// Geo trie entries of one family: (network address bytes, prefix length, entry), sorted.
pub(crate) type GeoTable<const N: usize> = Vec<([u8; N], u32, GeoEntry)>;

/// The id of `list` in `lists`, adding it if it is new.
pub(crate) fn intern(
    list: MatchList,
    dedup: &mut HashMap<MatchList, u32>,
    lists: &mut Vec<MatchList>,
) -> u32 {
    *dedup.entry(list).or_insert_with(|| {
        lists.push(list);
        (lists.len() - 1) as u32
    })
}

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
pub(crate) fn aggregate<V: Copy + PartialEq>(sorted: Vec<(u128, u32, V)>, width: u32) -> Vec<(u128, u32, V)> {
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
    let bytes = |addr: u128| -> [u8; N] { addr.to_be_bytes()[16 - N..].try_into().expect("N <= 16") };
    Ok(merged.into_iter().map(|(addr, len, entry)| (bytes(addr), len, entry)).collect())
}

/// Builds both geo tables for `policy` from `geo`, adding the country match lists to `lists`.
pub(crate) fn build_geo(
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
    let v4 =
        geo.networks_v4().iter().map(|(n, c)| (key_of(&n.network().octets()), u32::from(n.prefix_len()), *c));
    let v6 = geo
        .networks_v6()
        .iter()
        // The kernel decides IPv4-mapped addresses as IPv4; such networks are never looked up.
        .filter(|(n, _)| n.network().to_ipv4_mapped().is_none() || n.prefix_len() < 96)
        .map(|(n, c)| (key_of(&n.network().octets()), u32::from(n.prefix_len()), *c));
    Ok((table::<4>(v4, &entries, other, MAX_GEO_V4)?, table::<16>(v6, &entries, other, MAX_GEO_V6)?))
}

/// The kernel's geo step for the longest geo entry containing the address (`None`: no entry):
/// (`ACTION_*`, rule id, the deciding match item if a country rule decided).
pub(crate) fn geo_verdict(
    entry: Option<GeoEntry>,
    lists: &[MatchList],
    port: u16,
    proto: u32,
    default_action: u32,
    unknown_action: u32,
) -> (u32, u32, Option<MatchItem>) {
    let find = |id: u32| {
        if id == NO_LIST {
            None
        } else {
            lists.get(id as usize).and_then(|l| l.find_item(port, proto)).copied()
        }
    };
    match entry {
        Some(entry) => {
            if let Some(item) = find(entry.deny_list) {
                (ACTION_DENY, item.rule_id, Some(item))
            } else if let Some(item) = find(entry.allow_list) {
                (ACTION_ALLOW, item.rule_id, Some(item))
            } else {
                (default_action, RULE_DEFAULT, None)
            }
        }
        None => match unknown_action {
            UNKNOWN_DENY => (ACTION_DENY, RULE_UNKNOWN_COUNTRY, None),
            UNKNOWN_ALLOW => (ACTION_ALLOW, RULE_UNKNOWN_COUNTRY, None),
            _ => (default_action, RULE_DEFAULT, None),
        },
    }
}
