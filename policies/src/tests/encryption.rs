//! Encryption requirements: parsing and validation of `peers`, `regions`, `crossBorder` and
//! `encryption`, the reference semantics, and the compiled form.

use std::net::IpAddr;

use ringfence_common::{MatchItem, ITEM_ENCRYPT, PROTO_ANY, PROTO_TCP, PROTO_UDP};

use super::geo_precedence::small_db;
use super::{assert_diag, doc, parse_err, parse_ok};
use crate::{compile, CompileError, Destination, Region};

/// Peers, two regions (home: DE + 192.0.2.0/24), crossBorder, and rules with and without
/// `encryption: required`.
const SPEC: &str = "  defaultAction: deny
  peers: { cidrs: [198.51.100.0/26, \"2001:db8:10::/48\", \"::ffff:192.0.2.128/121\", 198.51.100.0/26] }
  regions:
    home: { countries: [DE], cidrs: [192.0.2.0/25] }
    abroad: { countryGroups: [mine], cidrs: [\"2001:db8:1::/48\"] }
  countryGroups: { mine: [US, CN] }
  crossBorder: { require: wireguard, homeRegion: home }
  egress:
    - name: storage
      action: allow
      encryption: required
      to: { cidrs: [203.0.113.0/24] }
      ports: [{ port: 443, protocol: tcp }]
    - { name: plain, action: allow, encryption: none, to: { cidrs: [203.0.113.0/25] }, ports: [{ port: 80 }] }
    - { name: de-https, action: allow, encryption: required, to: { countries: [DE] }, ports: [{ port: 443 }] }
    - { name: blocked, action: deny, encryption: none, to: { cidrs: [203.0.113.128/25] }, ports: [{ port: 22 }] }
    - { name: local, action: allow, to: { cidrs: [192.0.2.0/24] } }
";

#[test]
fn parses_peers_regions_cross_border_and_encryption() {
    let p = parse_ok(&doc(SPEC));
    let nets = |v: &[&str]| v.iter().map(|n| n.parse().unwrap()).collect::<Vec<ipnet::IpNet>>();
    // Sorted, deduplicated, IPv4-mapped converted.
    assert_eq!(p.peers, nets(&["192.0.2.128/25", "198.51.100.0/26", "2001:db8:10::/48"]));
    assert_eq!(p.regions.len(), 2);
    assert_eq!(p.regions["home"], Region { countries: vec![*b"DE"], cidrs: nets(&["192.0.2.0/25"]) });
    assert_eq!(p.regions["abroad"].countries, vec![*b"CN", *b"US"]);
    assert_eq!(p.cross_border.as_deref(), Some("home"));
    assert_eq!(p.home_region(), Some(&p.regions["home"]));
    let flags: Vec<bool> = p.rules.iter().map(|r| r.encryption_required).collect();
    assert_eq!(flags, vec![true, false, true, false, false]);
    assert!(p.references_countries() && p.uses_encryption());
    assert_eq!(p.geo_countries(), vec![*b"DE"]);
    let plain = parse_ok(&doc("  defaultAction: allow\n"));
    assert!(plain.peers.is_empty() && plain.regions.is_empty() && plain.cross_border.is_none());
    assert!(!plain.uses_encryption());
}

#[test]
fn home_region_countries_need_the_database() {
    let only_home = parse_ok(&doc(
        "  defaultAction: allow\n  regions: { eu-west: { countries: [FR, DE] } }\n  crossBorder: { require: wireguard, homeRegion: eu-west }\n",
    ));
    assert!(only_home.references_countries());
    assert_eq!(
        compile(&only_home, None).unwrap_err(),
        CompileError::GeoDatabaseRequired { countries: vec!["DE".into(), "FR".into()] }
    );
    // A region with countries that is not the home region needs no database.
    let not_home = parse_ok(&doc(
        "  defaultAction: allow\n  regions: { eu-west: { countries: [FR] }, lab: { cidrs: [192.0.2.0/24] } }\n  crossBorder: { require: wireguard, homeRegion: lab }\n",
    ));
    assert!(!not_home.references_countries());
    let c = compile(&not_home, None).unwrap();
    assert_eq!((c.home4.clone(), c.cross_border), (vec![([192, 0, 2, 0], 24)], true));
}

#[test]
fn validation_errors() {
    let src = doc("  defaultAction: deny
  peers: { cidrs: [], hosts: [a] }
  regions:
    eu-west: { countries: [de], countryGroups: [nowhere] }
    empty: {}
    Bad_Name: { cidrs: [192.0.2.0/24] }
    lab: { cidrs: [192.0.2.1/24], zones: [a] }
  crossBorder: { require: ipsec, homeRegion: moon, mode: strict }
  egress:
    - { name: no, action: deny, encryption: required, to: { cidrs: [203.0.113.0/24] } }
    - { name: odd, action: allow, encryption: always, to: { cidrs: [203.0.113.0/24] } }
");
    let diags = parse_err(&src);
    assert_diag(&diags, 7, 23, "unknown field \"hosts\" in spec.peers (expected one of: cidrs)");
    assert_diag(&diags, 7, 19, "\"peers.cidrs\" in spec must not be empty");
    assert_diag(&diags, 9, 28, "invalid country code \"de\" in region \"eu-west\" of spec.regions");
    assert_diag(&diags, 9, 49, "unknown country group \"nowhere\" in region \"eu-west\" of spec.regions");
    assert_diag(
        &diags,
        10,
        12,
        "region \"empty\" in spec.regions needs at least one of \"countries\", \"countryGroups\", \"cidrs\"",
    );
    assert_diag(&diags, 11, 5, "invalid region name \"Bad_Name\"");
    assert_diag(&diags, 12, 20, "has host bits set; did you mean \"192.0.2.0/24\"?");
    assert_diag(&diags, 12, 35, "unknown field \"zones\" in region \"lab\" of spec.regions");
    assert_diag(&diags, 13, 27, "invalid require \"ipsec\" in spec.crossBorder (expected one of: wireguard)");
    assert_diag(
        &diags,
        13,
        46,
        "unknown region \"moon\" for \"homeRegion\" in spec.crossBorder (defined regions: empty, eu-west, lab)",
    );
    assert_diag(
        &diags,
        13,
        52,
        "unknown field \"mode\" in spec.crossBorder (expected one of: require, homeRegion)",
    );
    assert_diag(&diags, 15, 45, "\"encryption: required\" in rule \"no\" is only valid on allow rules");
    assert_diag(
        &diags,
        16,
        47,
        "invalid encryption \"always\" in rule \"odd\" (expected one of: required, none)",
    );
    assert_eq!(diags.len(), 13, "{diags:#?}");
}

#[test]
fn cross_border_needs_its_fields_and_a_defined_region() {
    let diags = parse_err(&doc("  defaultAction: deny\n  crossBorder: { homeRegion: home }\n"));
    assert_diag(&diags, 7, 16, "missing required field \"require\" in spec.crossBorder");
    let diags = parse_err(&doc("  defaultAction: deny\n  crossBorder: { require: wireguard }\n"));
    assert_diag(&diags, 7, 16, "missing required field \"homeRegion\" in spec.crossBorder");
    let diags =
        parse_err(&doc("  defaultAction: deny\n  crossBorder: { require: wireguard, homeRegion: home }\n"));
    assert_diag(
        &diags,
        7,
        50,
        "unknown region \"home\" for \"homeRegion\" in spec.crossBorder (no regions are defined; define it in spec.regions)",
    );
    // A home region whose definition has errors is reported once, at the definition.
    let diags = parse_err(&doc(
        "  defaultAction: deny\n  regions: { home: { countries: [XX] } }\n  crossBorder: { require: wireguard, homeRegion: home }\n",
    ));
    assert_eq!(diags.len(), 1, "{diags:#?}");
    assert_diag(&diags, 7, 34, "unknown country code \"XX\"");
    // encryption: none is fine on a deny rule.
    parse_ok(&doc(
        "  defaultAction: allow\n  egress:\n    - {name: d, action: deny, encryption: none, to: {cidrs: [192.0.2.0/24]}}\n",
    ));
}

fn reason(p: &crate::Policy, to: &str) -> Option<String> {
    let dest: Destination = to.parse().unwrap();
    let d = p.evaluate_with_geo(&dest, Some(&small_db()));
    assert_eq!(d.encryption_required, d.encryption_reason.is_some(), "{to}");
    d.encryption_reason
}

#[test]
fn reference_semantics() {
    // small_db: 198.51.100.0/25 DE, 198.51.100.128/25 FR, 203.0.113.0/24 CN, 2001:db8:1::/48 US.
    let p = parse_ok(&doc(SPEC));
    let r = |to: &str| reason(&p, to);
    // (a) Peers, whatever decides the verdict (here the default deny), longest peer prefix.
    assert_eq!(r("198.51.100.7:22").as_deref(), Some("peer node 198.51.100.0/26"));
    assert_eq!(r("[::ffff:192.0.2.200]:53/udp").as_deref(), Some("peer node 192.0.2.128/25"));
    assert_eq!(r("[2001:db8:10::1]:443").as_deref(), Some("peer node 2001:db8:10::/48"));
    // (b) The deciding allow rule requires it: CIDR rule, and country rule.
    assert_eq!(r("203.0.113.7:443/tcp").as_deref(), Some("rule \"storage\" requires encryption"));
    assert_eq!(r("198.51.100.70:443/udp").as_deref(), Some("rule \"de-https\" requires encryption"));
    // (c) Outside the home region: CN, FR, no country; inside: its CIDRs, DE.
    assert_eq!(r("203.0.113.7:80/tcp").as_deref(), Some("outside home region home"));
    assert_eq!(r("203.0.113.200:22/tcp").as_deref(), Some("outside home region home"));
    assert_eq!(r("198.51.100.200:443/tcp").as_deref(), Some("outside home region home"));
    assert_eq!(r("10.0.0.1:443/tcp").as_deref(), Some("outside home region home"));
    assert_eq!(r("[2001:db8:1::1]:443").as_deref(), Some("outside home region home"));
    assert_eq!(r("192.0.2.1:53/udp"), None);
    assert_eq!(r("198.51.100.70:80/tcp"), None);
    // Without a database every address has no country: only the CIDRs are home.
    let d = p.evaluate(&"198.51.100.70:80/tcp".parse().unwrap());
    assert_eq!(d.encryption_reason.as_deref(), Some("outside home region home"));
    // Without crossBorder: a deny rule, the default action and a plain rule need nothing.
    let no_border = crate::Policy { cross_border: None, ..p.clone() };
    assert_eq!(reason(&no_border, "203.0.113.200:22/tcp"), None);
    assert_eq!(reason(&no_border, "203.0.113.7:80/tcp"), None);
    assert_eq!(reason(&no_border, "10.0.0.1:443/tcp"), None);
    // Audit mode turns the deny of a peer into an allow; the peer still must be encrypted.
    let audit = crate::Policy { mode: crate::Mode::Audit, ..p.clone() };
    let d = audit.evaluate_with_geo(&"198.51.100.7:22".parse().unwrap(), Some(&small_db()));
    assert!(d.audited && d.encryption_required);
    assert!(d.explanation.last().unwrap().contains("audit"));
    assert!(d.explanation.iter().any(|s| s == "encryption required: peer node 198.51.100.0/26"), "{d:#?}");
}

#[test]
fn compiled_form() {
    let p = parse_ok(&doc(SPEC));
    let db = small_db();
    let c = compile(&p, Some(&db)).unwrap();
    // Peers: masked, deduplicated, IPv4-mapped as IPv4.
    assert_eq!(c.encrypt4, vec![([192, 0, 2, 128], 25), ([198, 51, 100, 0], 26)]);
    let v6: std::net::Ipv6Addr = "2001:db8:10::".parse().unwrap();
    assert_eq!(c.encrypt6, vec![(v6.octets(), 48)]);
    // Home: 192.0.2.0/25 plus DE's 198.51.100.0/25; no IPv6.
    assert_eq!(c.home4, vec![([192, 0, 2, 0], 25), ([198, 51, 100, 0], 25)]);
    assert!(c.home6.is_empty());
    assert!(c.cross_border);
    assert_eq!(c.encryption_prefix_count(), 5);
    // Items of rules with encryption: required carry ITEM_ENCRYPT above the protocol.
    let list = |id: u32| &c.lists[id as usize];
    let storage = c.v4.allow.iter().find(|(a, l, _)| (*a, *l) == ([203, 0, 113, 0], 24)).unwrap();
    assert_eq!(
        list(storage.2.list_id).items[0],
        MatchItem { port_lo: 443, port_hi: 443, proto: PROTO_TCP | ITEM_ENCRYPT, rule_id: 1 }
    );
    let local = c.v4.allow.iter().find(|(a, l, _)| (*a, *l) == ([192, 0, 2, 0], 24)).unwrap();
    assert_eq!(list(local.2.list_id).items[0].proto, PROTO_ANY);
    let de = c.geo4.iter().find(|(a, l, _)| (*a, *l) == ([198, 51, 100, 0], 25)).unwrap();
    assert_eq!(list(de.2.allow_list).items[0].proto, PROTO_ANY | ITEM_ENCRYPT);
    // The verdict masks the flag; must_encrypt models the kernel.
    let a = |s: &str| s.parse::<IpAddr>().unwrap();
    assert_eq!(c.evaluate(a("203.0.113.7"), 443, PROTO_TCP), (ringfence_common::ACTION_ALLOW, 1));
    assert!(c.must_encrypt(a("203.0.113.7"), 443, PROTO_TCP));
    assert!(c.must_encrypt(a("198.51.100.70"), 443, PROTO_UDP));
    assert!(!c.must_encrypt(a("198.51.100.70"), 80, PROTO_TCP));
    assert!(!c.must_encrypt(a("192.0.2.1"), 53, PROTO_UDP));
    assert!(c.must_encrypt(a("::ffff:192.0.2.200"), 53, PROTO_UDP));
    assert!(c.must_encrypt(a("198.51.100.200"), 443, PROTO_TCP));
    // Without crossBorder only peers and rules count, and the home tries are empty.
    let no_border = crate::Policy { cross_border: None, ..p.clone() };
    let c = compile(&no_border, Some(&db)).unwrap();
    assert!(c.home4.is_empty() && c.home6.is_empty() && !c.cross_border);
    assert!(!c.must_encrypt(a("10.0.0.1"), 443, PROTO_TCP));
    assert!(c.must_encrypt(a("198.51.100.1"), 80, PROTO_TCP));
}

#[test]
fn home_prefixes_are_merged_and_nested_ones_dropped() {
    let p = parse_ok(&doc(
        "  defaultAction: allow
  regions:
    home:
      countries: [DE, FR]
      cidrs: [192.0.2.0/26, 192.0.2.64/26, 192.0.2.0/27, \"2001:db8::/33\", \"2001:db8:8000::/33\", \"2001:db8:1::/48\"]
  crossBorder: { require: wireguard, homeRegion: home }
",
    ));
    let c = compile(&p, Some(&small_db())).unwrap();
    // DE /25 + FR /25 merge into the /24; the two /26 into a /25 containing the /27.
    assert_eq!(c.home4, vec![([192, 0, 2, 0], 25), ([198, 51, 100, 0], 24)]);
    let v6: std::net::Ipv6Addr = "2001:db8::".parse().unwrap();
    assert_eq!(c.home6, vec![(v6.octets(), 32)]);
}

#[test]
fn home_prefixes_that_only_touch_stay_apart() {
    let p = parse_ok(&doc("  defaultAction: allow
  regions:
    home:
      cidrs: [192.0.2.64/26, 192.0.2.128/26, 192.0.2.192/26, 10.1.0.0/16, 10.0.0.0/8, 10.0.0.0/8]
  crossBorder: { require: wireguard, homeRegion: home }
"));
    let c = compile(&p, None).unwrap();
    // .64/26 touches .128/25 (the two upper /26) but no /25 holds both; 10.1/16 is inside 10/8.
    assert_eq!(c.home4, vec![([10, 0, 0, 0], 8), ([192, 0, 2, 64], 26), ([192, 0, 2, 128], 25)]);
    assert!(c.home6.is_empty());
}

#[test]
fn peer_prefixes_are_limited_like_other_tries() {
    use std::net::Ipv6Addr;
    let max = ringfence_common::MAX_PREFIXES_V6 as usize;
    let peers: Vec<ipnet::IpNet> = (0..=max as u128)
        .map(|i| {
            ipnet::IpNet::new(IpAddr::V6(Ipv6Addr::from((0x2001_0db8u128 << 96) | (i << 8))), 120).unwrap()
        })
        .collect();
    let p = crate::Policy { peers, ..parse_ok(&doc("  defaultAction: allow\n")) };
    let err = compile(&p, None).unwrap_err();
    assert_eq!(
        err,
        CompileError::TooManyEncryptionPrefixes { table: "peer", family: 6, count: max + 1, max }
    );
    assert_eq!(
        err.to_string(),
        format!("{} IPv6 peer prefixes, more than the kernel limit of {max}", max + 1)
    );
}
