//! Parsing and validation of countries, country groups and `unknownCountry`.

use super::{assert_diag, doc, parse_err, parse_ok};
use crate::Action;

#[test]
fn countries_groups_and_unknown_country() {
    let p = parse_ok(&doc("  defaultAction: deny
  unknownCountry: deny
  countryGroups:
    nordics: [SE, NO, DK, FI, IS]
    eu: [DE]
  egress:
    - name: mixed
      action: allow
      to: {cidrs: [10.0.0.0/8], countries: [CH, CH, AT], countryGroups: [nordics]}
    - name: shipped
      action: deny
      to: {countryGroups: [export-control-example, eea]}
    - name: overridden
      action: allow
      to: {countryGroups: [eu]}
      ports: [{port: 443}]
"));
    assert_eq!(p.unknown_country, Some(Action::Deny));
    let codes = |i: usize| {
        p.rules[i].countries.iter().map(|c| crate::countries::country_str(c).to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(codes(0), ["AT", "CH", "DK", "FI", "IS", "NO", "SE"]);
    assert_eq!(p.rules[0].country_groups, ["nordics"]);
    assert_eq!(p.rules[0].cidrs.len(), 1);
    assert_eq!(p.rules[1].countries.len(), 34, "{:?}", codes(1));
    assert!(p.rules[1].cidrs.is_empty());
    // A policy group with a shipped name replaces the shipped group.
    assert_eq!(codes(2), ["DE"]);
    assert!(p.references_countries());
    // EEA (30) + CU, IR, KP, SY + CH; AT, DE, DK, FI, IS, NO, SE are in the EEA.
    assert_eq!(p.countries().len(), 35, "{:?}", p.countries());
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(json["rules"][2]["countries"], serde_json::json!(["DE"]));
    assert_eq!(json["unknown_country"], "deny");
}

#[test]
fn unknown_country_alone_references_countries() {
    let p = parse_ok(&doc("  defaultAction: allow\n  unknownCountry: allow\n"));
    assert!(p.references_countries());
    assert!(p.countries().is_empty());
    let plain = parse_ok(&doc(
        "  defaultAction: allow\n  egress:\n    - {name: a, action: deny, to: {cidrs: [10.0.0.0/8]}}\n",
    ));
    assert!(!plain.references_countries());
}

#[test]
fn invalid_codes_groups_and_targets_are_reported_with_positions() {
    let diags = parse_err(&doc("  defaultAction: deny
  unknownCountry: maybe
  countryGroups:
    Bad_Name: [DE]
    empty: []
    broken: [XX]
  egress:
    - {name: a, action: allow, to: {countries: [de, XX, UK]}}
    - {name: b, action: allow, to: {countryGroups: [nope, broken]}}
    - {name: c, action: allow, to: {}}
    - {name: d, action: allow, to: {countries: []}}
"));
    assert_diag(&diags, 7, 19, "invalid unknownCountry \"maybe\" in spec (expected one of: allow, deny)");
    assert_diag(&diags, 9, 5, "invalid country group name \"Bad_Name\"");
    assert_diag(&diags, 10, 12, "\"empty\" in spec.countryGroups must not be empty");
    assert_diag(&diags, 11, 14, "unknown country code \"XX\" in spec.countryGroups");
    assert_diag(
        &diags,
        13,
        49,
        "invalid country code \"de\" in rule \"a\": country codes must be uppercase ISO 3166-1 alpha-2 codes; did you mean \"DE\"?",
    );
    assert_diag(
        &diags,
        13,
        53,
        "unknown country code \"XX\" in rule \"a\": not an officially assigned ISO 3166-1 alpha-2 code",
    );
    assert_diag(&diags, 13, 57, "did you mean \"GB\"?");
    assert_diag(
        &diags,
        14,
        53,
        "unknown country group \"nope\" in rule \"b\" (known groups: broken, eea, empty, eu, export-control-example",
    );
    assert_diag(
        &diags,
        15,
        36,
        "\"to\" in rule \"c\" needs at least one of \"cidrs\", \"countries\", \"countryGroups\"",
    );
    assert_diag(&diags, 16, 48, "\"to.countries\" in rule \"d\" must not be empty");
    // "broken" was reported where it is defined, not again where rule b uses it.
    assert!(!diags.iter().any(|d| d.message.contains("unknown country group \"broken\"")), "{diags:#?}");
    assert_eq!(diags.len(), 10, "{diags:#?}");
}
