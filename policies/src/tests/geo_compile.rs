//! Compilation of country rules: geo entries, shared lists, aggregation, limits.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use ringfence_common::{
    country_code, GeoEntry, MatchItem, ACTION_ALLOW, ACTION_DENY, NO_LIST, PROTO_ANY, PROTO_TCP,
    RULE_DEFAULT, RULE_UNKNOWN_COUNTRY, UNKNOWN_DEFAULT, UNKNOWN_DENY,
};

use super::geo_precedence::small_db;
use super::{doc, parse_ok};
use crate::countries::CountryCode;
use crate::geo::GeoDb;
use crate::{compile, CompileError, Destination, Policy};

fn item(port_lo: u16, port_hi: u16, proto: u32, rule_id: u32) -> MatchItem {
    MatchItem { port_lo, port_hi, proto, rule_id }
}

#[test]
fn a_policy_with_countries_needs_a_database() {
    let p = parse_ok(&doc(
        "  defaultAction: deny\n  egress:\n    - {name: a, action: allow, to: {countries: [DE, AT]}}\n",
    ));
    let err = compile(&p, None).unwrap_err();
    assert_eq!(err, CompileError::GeoDatabaseRequired { countries: vec!["AT".into(), "DE".into()] });
    assert_eq!(
        err.to_string(),
        "the policy names countries (AT, DE); give the agent a geo-IP database with --geoip-db"
    );
    let only_unknown = parse_ok(&doc("  defaultAction: deny\n  unknownCountry: allow\n"));
    assert!(compile(&only_unknown, None)
        .unwrap_err()
        .to_string()
        .starts_with("the policy sets unknownCountry;"));
    // Policies without countries ignore the database.
    let plain = parse_ok(&doc(
        "  defaultAction: deny\n  egress:\n    - {name: a, action: allow, to: {cidrs: [10.0.0.0/8]}}\n",
    ));
    let c = compile(&plain, Some(&small_db())).unwrap();
    assert_eq!((c.geo_entries(), c.unknown_action), (0, UNKNOWN_DEFAULT));
}

#[test]
fn entries_point_at_the_lists_of_the_rules_naming_the_country() {
    let p = parse_ok(&doc("  defaultAction: allow
  egress:
    - {name: cn-ssh, action: deny, to: {countries: [CN]}, ports: [{port: 22, protocol: tcp}]}
    - {name: cn, action: deny, to: {cidrs: [192.0.2.0/24], countries: [CN, US]}}
    - {name: de, action: allow, to: {countries: [DE]}, ports: [{port: 443, protocol: tcp}]}
"));
    let c = compile(&p, Some(&small_db())).unwrap();
    assert_eq!(c.countries, vec![*b"CN", *b"DE", *b"US"]);
    assert_eq!(c.unknown_action, UNKNOWN_DEFAULT);
    // FR is named by no rule and unknownCountry is not set: its network is not loaded.
    let nets: Vec<_> = c.geo4.iter().map(|(a, l, _)| (*a, *l)).collect();
    assert_eq!(nets, vec![([198, 51, 100, 0], 25), ([203, 0, 113, 0], 24)]);
    let list = |id: u32| {
        let l = c.lists[id as usize];
        l.items[..l.len as usize].to_vec()
    };
    let (_, _, de) = c.geo4[0];
    assert_eq!((de.deny_list, de.country), (NO_LIST, country_code(*b"DE")));
    assert_eq!(list(de.allow_list), vec![item(443, 443, PROTO_TCP, 3)]);
    let (_, _, cn) = c.geo4[1];
    assert_eq!(cn.allow_list, NO_LIST);
    assert_eq!(list(cn.deny_list), vec![item(22, 22, PROTO_TCP, 1), item(0, 65535, PROTO_ANY, 2)]);
    // The CIDR part of rule 2 shares its list with the US entry.
    let (_, _, us) = c.geo6[0];
    assert_eq!(list(us.deny_list), vec![item(0, 65535, PROTO_ANY, 2)]);
    assert_eq!(c.v4.deny[0].2.list_id, us.deny_list);
    assert_eq!(c.evaluate("203.0.113.1".parse().unwrap(), 80, PROTO_TCP), (ACTION_DENY, 2));
    assert_eq!(c.evaluate("198.51.100.200".parse().unwrap(), 80, PROTO_TCP), (ACTION_ALLOW, RULE_DEFAULT));

    let with_unknown = Policy { unknown_country: Some(crate::Action::Deny), ..p };
    let c = compile(&with_unknown, Some(&small_db())).unwrap();
    assert_eq!(c.unknown_action, UNKNOWN_DENY);
    let fr = c.geo4.iter().find(|(a, l, _)| (*a, *l) == ([198, 51, 100, 128], 25)).unwrap().2;
    assert_eq!(fr, GeoEntry { deny_list: NO_LIST, allow_list: NO_LIST, country: 0, _reserved: 0 });
    assert_eq!(c.evaluate("198.51.100.200".parse().unwrap(), 80, PROTO_TCP), (ACTION_ALLOW, RULE_DEFAULT));
    assert_eq!(c.evaluate("192.0.2.200".parse().unwrap(), 80, PROTO_TCP), (ACTION_DENY, 2));
    assert_eq!(c.evaluate("8.8.8.8".parse().unwrap(), 80, PROTO_TCP), (ACTION_DENY, RULE_UNKNOWN_COUNTRY));
}

#[test]
fn adjacent_networks_of_one_country_are_aggregated() {
    let v4: Vec<(Ipv4Net, CountryCode)> = (0..256u32)
        .map(|i| (Ipv4Net::new(Ipv4Addr::from(0x5100_0000 + (i << 8)), 24).unwrap(), *b"DE"))
        .collect();
    let db = GeoDb::from_networks(v4, Vec::new());
    let p = parse_ok(&doc(
        "  defaultAction: deny\n  egress:\n    - {name: de, action: allow, to: {countries: [DE]}}\n",
    ));
    let c = compile(&p, Some(&db)).unwrap();
    assert_eq!(c.geo4.len(), 1, "{:?}", c.geo4);
    assert_eq!((c.geo4[0].0, c.geo4[0].1), ([81, 0, 0, 0], 16));
    assert_eq!(c.evaluate("81.0.200.1".parse().unwrap(), 1, PROTO_TCP), (ACTION_ALLOW, 1));
    assert_eq!(c.evaluate("81.1.0.1".parse().unwrap(), 1, PROTO_TCP), (ACTION_DENY, RULE_DEFAULT));
}

#[test]
fn too_many_items_for_one_country_is_an_error() {
    let ports: Vec<String> = (1..=9).map(|p| format!("{{port: {p}}}")).collect();
    let ports = ports.join(", ");
    let p = parse_ok(&doc(&format!("  defaultAction: deny\n  egress:\n    - {{name: a, action: deny, to: {{countries: [DE]}}, ports: [{ports}]}}\n    - {{name: b, action: deny, to: {{countryGroups: [eu]}}, ports: [{ports}]}}\n")));
    let err = compile(&p, Some(&small_db())).unwrap_err();
    assert_eq!(
        err.to_string(),
        "country DE has 18 deny match items (rules 1 \"a\", 2 \"b\"), more than the kernel limit of 16 per country; merge ports into ranges or split the rules"
    );
}

/// xorshift; deterministic.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// 400,000 networks like a real database: runs of one country of random length, /20 to /24.
fn big_db() -> GeoDb {
    let pool: Vec<CountryCode> =
        crate::countries::COUNTRIES.iter().map(|(c, _)| c.as_bytes().try_into().unwrap()).collect();
    let mut state = 0x9E37_79B9_7F4A_7C15;
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    let (mut addr, mut country, mut run) = (0x0100_0000u32, *b"DE", 0u64);
    while v4.len() < 350_000 {
        if run == 0 {
            run = 1 + next(&mut state) % 40;
            let r = next(&mut state);
            country = if r.is_multiple_of(5) { *b"DE" } else { pool[(r >> 8) as usize % pool.len()] };
        }
        run -= 1;
        let len = 24 - (next(&mut state) % 2) as u32 * 4 * u32::from(addr.trailing_zeros() >= 12);
        v4.push((Ipv4Net::new(Ipv4Addr::from(addr), len as u8).unwrap(), country));
        addr += 1 << (32 - len);
    }
    for i in 0..50_000u128 {
        let code = pool[(next(&mut state) as usize) % 8];
        v6.push((Ipv6Net::new((0x2a00_0000u128 << 96 | i << 80).into(), 48).unwrap(), code));
    }
    GeoDb::from_networks(v4, v6)
}

#[test]
fn four_hundred_thousand_networks_compile_and_aggregate() {
    let db = big_db();
    let networks = db.networks_v4().len() + db.networks_v6().len();
    assert_eq!(networks, 400_000);
    let allow_de = parse_ok(&doc("  defaultAction: deny\n  unknownCountry: deny\n  egress:\n    - {name: internal, action: allow, to: {cidrs: [10.0.0.0/8]}}\n    - {name: de, action: allow, to: {countries: [DE]}}\n"));
    let deny_some = parse_ok(&doc("  defaultAction: allow\n  egress:\n    - {name: sanctions, action: deny, to: {countries: [CN, RU, IR, KP]}}\n"));
    for policy in [&allow_de, &deny_some] {
        let c = compile(policy, Some(&db)).unwrap();
        assert!(c.geo_entries() > 0 && c.geo_entries() < networks / 2, "{} entries", c.geo_entries());
        let mut state = 7;
        for _ in 0..2000 {
            let addr = IpAddr::V4(Ipv4Addr::from(0x0100_0000 + (next(&mut state) % 0x0800_0000) as u32));
            let dest = Destination { addr, port: Some(443), protocol: crate::Protocol::Tcp };
            let r = policy.evaluate_with_geo(&dest, Some(&db));
            let rule = match r.decided_by {
                crate::DecidedBy::UnknownCountry => RULE_UNKNOWN_COUNTRY,
                _ => r.rule.unwrap_or(RULE_DEFAULT),
            };
            let action = if r.action == crate::Action::Deny { ACTION_DENY } else { ACTION_ALLOW };
            assert_eq!(c.evaluate(addr, 443, PROTO_TCP), (action, rule), "{addr}");
        }
    }
}
