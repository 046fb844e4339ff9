//! Country groups shipped with Ringfence (`policies/groups/*.yaml`, embedded at build time) and
//! the parser for `kind: CountryGroup` documents.
//!
//! A policy uses a group by name in `to.countryGroups`. A group defined in the policy's
//! `spec.countryGroups` with the name of a shipped group replaces the shipped one.

use std::sync::OnceLock;

use serde::Serialize;

use super::codes::country_list;
use super::header::{check_name, header, validate_document};
use crate::countries::{serialize_codes, CountryCode};
use crate::diagnostic::Diagnostic;
use crate::fields::{fields, string};
use crate::yaml_tree::{parse_yaml, Node};

/// The `kind` of a country group document.
pub const GROUP_KIND: &str = "CountryGroup";

/// The shipped group files: (file name, contents). Every file in `policies/groups/` is listed.
pub const SHIPPED_GROUP_FILES: [(&str, &str); 3] = [
    ("eea.yaml", include_str!("../../groups/eea.yaml")),
    ("eu.yaml", include_str!("../../groups/eu.yaml")),
    ("export-control-example.yaml", include_str!("../../groups/export-control-example.yaml")),
];

/// A named list of countries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CountryGroup {
    /// `metadata.name`, e.g. `eu`.
    pub name: String,
    /// `metadata.source`: where the list comes from.
    pub source: String,
    /// `metadata.date`: when the list was checked against its source (`YYYY-MM-DD`).
    pub date: String,
    /// The members, sorted, without duplicates.
    #[serde(serialize_with = "serialize_codes")]
    pub countries: Vec<CountryCode>,
}

/// The shipped groups, sorted by name. Panics if a shipped file is invalid (a unit test parses
/// them all).
pub fn shipped_groups() -> &'static [CountryGroup] {
    static GROUPS: OnceLock<Vec<CountryGroup>> = OnceLock::new();
    GROUPS.get_or_init(|| {
        let mut groups: Vec<CountryGroup> = SHIPPED_GROUP_FILES
            .iter()
            .map(|(file, src)| {
                parse_country_group(src).unwrap_or_else(|d| panic!("shipped group {file} is invalid: {d:?}"))
            })
            .collect();
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        groups
    })
}

/// The shipped group named `name`.
pub fn shipped_group(name: &str) -> Option<&'static CountryGroup> {
    shipped_groups().iter().find(|g| g.name == name)
}

/// Parses and validates a `kind: CountryGroup` document; unknown fields are errors.
pub fn parse_country_group(src: &str) -> Result<CountryGroup, Vec<Diagnostic>> {
    let (root, diags) = parse_yaml(src)?;
    validate_document(root.as_ref(), diags, &format!("a {GROUP_KIND}"), document)
}

fn document(root: &Node, diags: &mut Vec<Diagnostic>) -> Option<CountryGroup> {
    let ctx = "at top level";
    let f = fields(root, &["apiVersion", "kind", "metadata", "countries"], "the group document", ctx, diags)?;
    header(&f, GROUP_KIND, ctx, diags);
    let meta = f.require("metadata", ctx, diags).and_then(|m| metadata(m, diags));
    let countries = f.require("countries", ctx, diags).and_then(|c| country_list(c, "countries", ctx, diags));
    let (name, source, date) = meta?;
    Some(CountryGroup { name, source, date, countries: countries? })
}

fn metadata(node: &Node, diags: &mut Vec<Diagnostic>) -> Option<(String, String, String)> {
    let ctx = "in metadata";
    let f = fields(node, &["name", "source", "date"], "metadata", ctx, diags)?;
    let mut text = |key: &str| {
        let v = f.require(key, ctx, diags)?;
        string(v, &format!("\"{key}\" {ctx}"), diags).map(|s| (v, s.to_owned()))
    };
    let (name, source, date) = (text("name"), text("source"), text("date"));
    let name = name.filter(|(v, name)| check_name(v, "country group", name, diags));
    if let Some((v, d)) = &date {
        let b = d.as_bytes();
        let ok = b.len() == 10
            && b.iter()
                .enumerate()
                .all(|(i, c)| if i == 4 || i == 7 { *c == b'-' } else { c.is_ascii_digit() });
        if !ok {
            diags.push(v.error(format!("invalid date \"{d}\" {ctx} (expected YYYY-MM-DD)")));
            return None;
        }
    }
    Some((name?.1, source?.1, date?.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_group_parses_and_is_named_after_its_file() {
        let files: Vec<String> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/groups"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(
            files.len(),
            SHIPPED_GROUP_FILES.len(),
            "list every file of groups/ in SHIPPED_GROUP_FILES"
        );
        for (file, src) in SHIPPED_GROUP_FILES {
            assert!(files.iter().any(|f| f == file), "{file}");
            let group = parse_country_group(src).unwrap_or_else(|d| panic!("{file}: {d:?}"));
            assert_eq!(format!("{}.yaml", group.name), file);
            assert!(src.contains("Verify against current regulations"), "{file}");
        }
        assert_eq!(shipped_group("eu").unwrap().countries.len(), 27);
        assert_eq!(shipped_group("eea").unwrap().countries.len(), 30);
        assert_eq!(
            shipped_group("export-control-example").unwrap().countries,
            vec![*b"CU", *b"IR", *b"KP", *b"SY"]
        );
    }

    #[test]
    fn group_documents_are_validated() {
        let src = "apiVersion: ringfence.dev/v1\nkind: CountryGroup\nmetadata: {name: X, source: s, date: 2026-1-1, extra: 1}\ncountries: [DE, de, QQ]\nmore: 1\n";
        let diags = parse_country_group(src).unwrap_err();
        let text: Vec<String> = diags.iter().map(ToString::to_string).collect();
        let expect = [
            "3:18: error: invalid country group name \"X\"",
            "3:38: error: invalid date \"2026-1-1\"",
            "3:48: error: unknown field \"extra\" in metadata",
            "4:17: error: invalid country code \"de\"",
            "4:21: error: unknown country code \"QQ\"",
            "5:1: error: unknown field \"more\" at top level",
        ];
        assert_eq!(text.len(), expect.len(), "{text:#?}");
        for (got, want) in text.iter().zip(expect) {
            assert!(got.starts_with(want), "{got}\n  vs {want}");
        }
    }
}
