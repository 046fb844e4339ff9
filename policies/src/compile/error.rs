//! Why a policy cannot be compiled: the limits of the kernel's maps, and country rules without
//! a geo-IP database.

use ipnet::IpNet;

use crate::model::Action;

/// Why a policy cannot be represented in the kernel's maps.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    /// More than `MAX_ITEMS` match items of one action on one exact prefix.
    #[error("prefix {prefix} has {items} {action} match items (rules {}), more than the kernel limit of {max} per prefix; merge ports into ranges or split the prefix", .rules.join(", "))]
    TooManyItems { prefix: IpNet, action: Action, items: usize, rules: Vec<String>, max: usize },
    /// More distinct match lists than the kernel's list array holds (`MAX_LISTS`).
    #[error("the policy needs {lists} distinct match lists, more than the kernel limit of {max}")]
    TooManyLists { lists: usize, max: usize },
    /// More prefixes than one LPM trie holds (`MAX_PREFIXES_V4` / `MAX_PREFIXES_V6`).
    #[error("{count} IPv{family} {action} prefixes, more than the kernel limit of {max}")]
    TooManyPrefixes { family: u8, action: Action, count: usize, max: usize },
    /// A chain of nested prefixes of one action longer than the kernel walks (`MAX_DEPTH`);
    /// `chain` lists it from the outermost prefix.
    #[error("{depth} nested {action} prefixes ({}), more than the kernel's walk depth of {max}; remove or merge nested CIDRs", .chain.iter().map(ToString::to_string).collect::<Vec<_>>().join(" > "))]
    TooDeep { action: Action, depth: usize, chain: Vec<IpNet>, max: u32 },
    /// The policy names countries (or sets `unknownCountry`) but no geo-IP database was given.
    /// `countries` lists the codes named (empty if only `unknownCountry` is set).
    #[error("{}; give the agent a geo-IP database with --geoip-db", geo_required(.countries))]
    GeoDatabaseRequired { countries: Vec<String> },
    /// More than `MAX_ITEMS` match items of one action naming one country.
    #[error("country {country} has {items} {action} match items (rules {}), more than the kernel limit of {max} per country; merge ports into ranges or split the rules", .rules.join(", "))]
    TooManyCountryItems { country: String, action: Action, items: usize, rules: Vec<String>, max: usize },
    /// More geo entries (after aggregation) than one geo trie holds (`MAX_GEO_V4` / `MAX_GEO_V6`).
    #[error("{count} IPv{family} geo-IP entries after aggregation, more than the kernel limit of {max}")]
    TooManyGeoEntries { family: u8, count: usize, max: usize },
    /// More prefixes than one encryption trie holds (`MAX_PREFIXES_V4` / `MAX_PREFIXES_V6`);
    /// `table` is `"peer"` (`spec.peers`) or `"home region"` (crossBorder's home region).
    #[error("{count} IPv{family} {table} prefixes, more than the kernel limit of {max}")]
    TooManyEncryptionPrefixes { table: &'static str, family: u8, count: usize, max: usize },
    /// More name patterns (`to.fqdns`) than one table may hold in the name map.
    #[error("{names} distinct domain names, more than the kernel limit of {max} per policy; use wildcards")]
    TooManyNames { names: usize, max: usize },
    /// More than `MAX_ITEMS` match items of the allow rules naming one domain.
    #[error("domain {name} has {items} match items, more than the kernel limit of {max} per name; merge ports into ranges")]
    TooManyNameItems { name: String, items: usize, max: usize },
}

fn geo_required(countries: &[String]) -> String {
    if countries.is_empty() {
        "the policy sets unknownCountry".to_owned()
    } else {
        format!("the policy names countries ({})", countries.join(", "))
    }
}
