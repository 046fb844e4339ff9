//! Precedence with country rules, against the reference and the kernel model.

use std::net::IpAddr;

use ringfence_common::{ACTION_ALLOW, ACTION_DENY, RULE_DEFAULT, RULE_UNKNOWN_COUNTRY};

use super::{doc, parse_ok};
use crate::geo::GeoDb;
use crate::{compile, Action, DecidedBy, Destination, Policy};

/// 198.51.100.0/25 DE, 198.51.100.128/25 FR, 203.0.113.0/24 CN, 2001:db8:1::/48 US; the rest of
/// the address space has no record.
pub(crate) fn small_db() -> GeoDb {
    let v4 = [("198.51.100.0/25", *b"DE"), ("198.51.100.128/25", *b"FR"), ("203.0.113.0/24", *b"CN")];
    GeoDb::from_networks(
        v4.iter().map(|(n, c)| (n.parse().unwrap(), *c)).collect(),
        vec![("2001:db8:1::/48".parse().unwrap(), *b"US")],
    )
}

const SPEC: &str = "  defaultAction: allow
  unknownCountry: deny
  egress:
    - {name: internal, action: allow, to: {cidrs: [198.51.100.64/26]}}
    - {name: eu-https, action: allow, to: {countryGroups: [eu]}, ports: [{port: 443, protocol: tcp}]}
    - {name: no-fr-ssh, action: deny, to: {countries: [FR]}, ports: [{port: 22}]}
    - {name: no-cn, action: deny, to: {countries: [CN]}}
    - {name: no-cn-again, action: deny, to: {countries: [CN, US]}}
    - {name: us-allowed, action: allow, to: {countries: [US]}, ports: [{port: 443}]}
";

fn check(
    p: &Policy,
    db: &GeoDb,
    dest: &str,
    action: Action,
    rule: Option<u32>,
    by: DecidedBy,
) -> Vec<String> {
    let d: Destination = dest.parse().unwrap();
    let decision = p.evaluate_with_geo(&d, Some(db));
    assert_eq!(
        (decision.action, decision.rule, decision.decided_by),
        (action, rule, by),
        "{dest}: {:#?}",
        decision.explanation
    );
    let compiled = compile(p, Some(db)).unwrap();
    let kernel_rule = match by {
        DecidedBy::UnknownCountry => RULE_UNKNOWN_COUNTRY,
        _ => rule.unwrap_or(RULE_DEFAULT),
    };
    let kernel_action = if action == Action::Deny { ACTION_DENY } else { ACTION_ALLOW };
    assert_eq!(
        compiled.evaluate(d.addr, d.port.unwrap_or(0), d.protocol.to_kernel()),
        (kernel_action, kernel_rule),
        "{dest}"
    );
    decision.explanation
}

#[test]
fn cidr_rules_then_country_rules_then_unknown_then_default() {
    let p = parse_ok(&doc(SPEC));
    let db = small_db();
    // A CIDR rule beats the country rules.
    let steps = check(&p, &db, "198.51.100.70:22/tcp", Action::Allow, Some(1), DecidedBy::CidrRule);
    assert!(steps.iter().any(|s| s.contains("CIDR rules come before country rules")), "{steps:#?}");
    check(&p, &db, "198.51.100.10:443/tcp", Action::Allow, Some(2), DecidedBy::CountryRule);
    // A known country that no rule matches at this port: the default action (allow).
    let steps = check(&p, &db, "198.51.100.10:80/tcp", Action::Allow, None, DecidedBy::Default);
    assert!(steps.iter().any(|s| s.contains("in DE (Germany)")), "{steps:#?}");
    assert!(steps.iter().any(|s| s.contains("no country rule matches DE at 80/tcp")), "{steps:#?}");
    // Deny beats allow among country rules.
    check(&p, &db, "198.51.100.200:22/tcp", Action::Deny, Some(3), DecidedBy::CountryRule);
    check(&p, &db, "198.51.100.200:443/tcp", Action::Allow, Some(2), DecidedBy::CountryRule);
    // Lowest rule id among matching deny rules.
    let steps = check(&p, &db, "203.0.113.9:443/tcp", Action::Deny, Some(4), DecidedBy::CountryRule);
    assert!(
        steps.iter().any(|s| s.contains("lowest rule id among 2 matching deny country rules")),
        "{steps:#?}"
    );
    check(&p, &db, "[2001:db8:1::1]:443/tcp", Action::Deny, Some(5), DecidedBy::CountryRule);
    check(&p, &db, "[::ffff:203.0.113.9]:1/udp", Action::Deny, Some(4), DecidedBy::CountryRule);
    // No record: unknownCountry.
    let steps = check(&p, &db, "192.0.2.1:443/tcp", Action::Deny, None, DecidedBy::UnknownCountry);
    assert!(steps.iter().any(|s| s.contains("unknownCountry (deny) applies")), "{steps:#?}");
    check(&p, &db, "10.0.0.1", Action::Deny, None, DecidedBy::UnknownCountry);
    let without = parse_ok(&doc(&SPEC.replace("  unknownCountry: deny\n", "")));
    check(&without, &db, "192.0.2.1:443/tcp", Action::Allow, None, DecidedBy::Default);
}

#[test]
fn decision_reports_the_country_and_serializes_it() {
    let p = parse_ok(&doc(SPEC));
    let db = small_db();
    let d = p.evaluate_with_geo(&"198.51.100.200:22/tcp".parse().unwrap(), Some(&db));
    assert_eq!(d.country, Some(*b"FR"));
    assert_eq!(d.geo_network, Some("198.51.100.128/25".parse().unwrap()));
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json["country"], "FR");
    assert_eq!(json["decided_by"], "country-rule");
    let cidr = p.evaluate_with_geo(&"198.51.100.70:22/tcp".parse().unwrap(), Some(&db));
    assert_eq!((cidr.country, cidr.decided_by), (Some(*b"DE"), DecidedBy::CidrRule));
    assert_eq!(serde_json::to_value(&cidr).unwrap()["decided_by"], "cidr-rule");
}

#[test]
fn without_a_database_every_address_is_unknown() {
    let p = parse_ok(&doc(SPEC));
    let d = p.evaluate(&"198.51.100.10:443/tcp".parse().unwrap());
    assert_eq!(
        (d.action, d.rule, d.decided_by, d.country),
        (Action::Deny, None, DecidedBy::UnknownCountry, None)
    );
    assert!(d.explanation.iter().any(|s| s.contains("no geo-IP database given")), "{:#?}", d.explanation);
    // The kernel without geo entries behaves the same.
    let empty = GeoDb::from_networks(Vec::new(), Vec::new());
    let c = compile(&p, Some(&empty)).unwrap();
    assert_eq!(c.geo_entries(), 0);
    let addr: IpAddr = "198.51.100.10".parse().unwrap();
    assert_eq!(c.evaluate(addr, 443, ringfence_common::PROTO_TCP), (ACTION_DENY, RULE_UNKNOWN_COUNTRY));
}
