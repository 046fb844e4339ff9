//! Unit tests of the geo-IP reader: fixture databases written and read back, layouts, the
//! country field, merging several files, and clear errors for bad files.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use mmdb_writer::{Value, Writer};

use super::fixture::{write_mmdb, Layout, BUILD_EPOCH, DATABASE_TYPE};
use super::reader::parse_code;
use super::{GeoDb, GeoDbInfo, GeoError};

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ringfence-geo-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn code(db: &GeoDb, addr: &str) -> Option<String> {
    db.lookup(ip(addr)).map(|(_, c)| String::from_utf8(c.to_vec()).unwrap())
}

fn open1(path: &Path, field: Option<&str>) -> Result<GeoDb, GeoError> {
    GeoDb::open(&[path.to_path_buf()], field)
}

#[test]
fn geo_build_date() {
    let info = |e| GeoDbInfo { build_epoch: e, ..GeoDb::from_networks(vec![], vec![]).info().clone() };
    assert_eq!(info(0).build_date(), "1970-01-01");
    assert_eq!(info(BUILD_EPOCH).build_date(), "2025-01-01");
    assert_eq!(info(951_782_400).build_date(), "2000-02-29");
    assert_eq!(info(1_709_251_199).build_date(), "2024-02-29");
    assert!(!info(u64::MAX).build_date().is_empty());
}

#[test]
fn geo_parse_code() {
    assert_eq!(parse_code("us"), Some(*b"US"));
    assert_eq!(parse_code("ZZ"), Some(*b"ZZ"));
    for bad in ["", "U", "USA", "None", "-", "1A", "é"] {
        assert_eq!(parse_code(bad), None, "{bad}");
    }
}

#[test]
fn geo_fixture_round_trip() {
    for layout in [Layout::GeoIp2Country, Layout::Flat] {
        for version in [4u16, 6] {
            let path = tmp(&format!("rt-{layout:?}-{version}.mmdb"));
            let mut nets = vec![
                (net("198.51.100.0/24"), "DE"),
                (net("203.0.113.0/24"), "fr"),
                (net("192.0.2.0/24"), "None"),
            ];
            if version == 6 {
                nets.push((net("2001:db8::/32"), "JP"));
            }
            write_mmdb(&path, &nets, layout, version).unwrap();
            let db = open1(&path, None).unwrap();
            let what = format!("{layout:?} v{version}");
            assert_eq!(code(&db, "198.51.100.0").as_deref(), Some("DE"), "{what}");
            assert_eq!(code(&db, "198.51.100.255").as_deref(), Some("DE"), "{what}");
            assert_eq!(code(&db, "203.0.113.9").as_deref(), Some("FR"), "{what}");
            assert_eq!(code(&db, "192.0.2.1"), None, "{what}");
            assert_eq!(code(&db, "8.8.8.8"), None, "{what}");
            let (n, c) = db.lookup(ip("::ffff:198.51.100.7")).unwrap();
            assert_eq!((n, &c), (net("198.51.100.0/24"), b"DE"), "{what}");
            let v4: Vec<_> = db.networks_v4().iter().map(|(n, _)| n.to_string()).collect();
            assert_eq!(v4, ["198.51.100.0/24", "203.0.113.0/24"], "{what}");
            let info = db.info();
            assert_eq!(info.database_type, DATABASE_TYPE);
            assert_eq!(info.ip_versions, [version]);
            assert_eq!(info.build_date(), "2025-01-01");
            assert_eq!(info.skipped_networks, 1, "{what}");
            let field = if layout == Layout::Flat { "country_code" } else { "country.iso_code" };
            assert_eq!(info.field, field);
            if version == 6 {
                assert_eq!(code(&db, "2001:db8::").as_deref(), Some("JP"));
                assert_eq!(code(&db, "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff").as_deref(), Some("JP"));
                // Only the real IPv6 network: no ::/96 subtree, no ::ffff:0:0/96 or 2002::/16 alias.
                let v6: Vec<_> = db.networks_v6().iter().map(|(n, _)| n.to_string()).collect();
                assert_eq!(v6, ["2001:db8::/32"], "{what}");
                assert_eq!(code(&db, "2002:c633:6401::"), None);
            }
            assert_eq!((info.networks_v4, info.networks_v6), (2, usize::from(version == 6)));
        }
    }
}

#[test]
fn geo_two_files_merge_first_wins() {
    let a = tmp("merge-v4.mmdb");
    let b = tmp("merge-v6.mmdb");
    write_mmdb(&a, &[(net("198.51.100.0/24"), "DE")], Layout::Flat, 4).unwrap();
    let b_nets =
        [(net("2001:db8::/32"), "FR"), (net("198.51.100.0/25"), "US"), (net("203.0.113.0/24"), "SE")];
    write_mmdb(&b, &b_nets, Layout::GeoIp2Country, 6).unwrap();
    let db = GeoDb::open(&[a.clone(), b.clone()], None).unwrap();
    assert_eq!(code(&db, "198.51.100.1").as_deref(), Some("DE"));
    assert_eq!(code(&db, "203.0.113.1").as_deref(), Some("SE"));
    assert_eq!(code(&db, "2001:db8::1").as_deref(), Some("FR"));
    assert_eq!(db.networks_v4().len(), 2);
    let info = db.info();
    assert_eq!(info.paths, [a, b]);
    assert_eq!(info.ip_versions, [4, 6]);
    assert_eq!(info.field, "country_code, country.iso_code");
    assert_eq!(info.database_type, DATABASE_TYPE);
}

#[test]
fn geo_field_override_and_missing_field() {
    let flat = tmp("field-flat.mmdb");
    write_mmdb(&flat, &[(net("198.51.100.0/24"), "DE")], Layout::Flat, 6).unwrap();
    let db = open1(&flat, Some("country_code")).unwrap();
    assert_eq!(code(&db, "198.51.100.1").as_deref(), Some("DE"));
    let geo = tmp("field-geoip2.mmdb");
    write_mmdb(&geo, &[(net("198.51.100.0/24"), "DE")], Layout::GeoIp2Country, 6).unwrap();
    let db = open1(&geo, Some("registered_country.iso_code")).unwrap();
    assert_eq!(db.info().field, "registered_country.iso_code");
    assert_eq!(code(&db, "198.51.100.1").as_deref(), Some("DE"));

    match open1(&geo, Some("country_code")) {
        Err(GeoError::NoCountryField { path, tried }) => {
            assert_eq!(path, geo);
            assert_eq!(tried, ["country_code"]);
        }
        other => panic!("{other:?}"),
    }
    // A database without any known country field.
    let asn = tmp("field-asn.mmdb");
    let mut w = Writer::new("Test-ASN");
    w.insert_value(
        net("198.51.100.0/24"),
        Value::map([("autonomous_system_number", Value::from(64_512u32))]),
    )
    .unwrap();
    std::fs::write(&asn, w.to_bytes().unwrap()).unwrap();
    let err = open1(&asn, None).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, GeoError::NoCountryField { ref tried, .. } if tried.len() == 4), "{msg}");
    assert!(msg.contains(&asn.display().to_string()) && msg.contains("country.iso_code"), "{msg}");
}

#[test]
fn geo_registered_country_fallback() {
    let path = tmp("registered.mmdb");
    let iso = |c: &str| Value::map([("iso_code", Value::from(c))]);
    let mut w = Writer::new("Test-Country");
    w.insert_value(
        net("198.51.100.0/24"),
        Value::map([("country", iso("DE")), ("registered_country", iso("US"))]),
    )
    .unwrap();
    w.insert_value(net("203.0.113.0/24"), Value::map([("registered_country", iso("SE"))])).unwrap();
    std::fs::write(&path, w.to_bytes().unwrap()).unwrap();
    let db = open1(&path, None).unwrap();
    assert_eq!(code(&db, "198.51.100.1").as_deref(), Some("DE"));
    assert_eq!(code(&db, "203.0.113.1").as_deref(), Some("SE"));
}

#[test]
fn geo_bad_files_give_clear_errors() {
    let missing = tmp("does-not-exist.mmdb");
    let err = open1(&missing, None).unwrap_err();
    assert!(matches!(err, GeoError::Io { ref path, .. } if *path == missing), "{err:?}");
    assert!(err.to_string().contains(&missing.display().to_string()), "{err}");

    let dir = tmp("a-directory");
    std::fs::create_dir_all(&dir).unwrap();
    assert!(matches!(open1(&dir, None), Err(GeoError::Io { .. })));

    let empty = tmp("empty.mmdb");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(open1(&empty, None), Err(GeoError::Empty { .. })));

    let text = tmp("text.mmdb");
    std::fs::write(&text, "198.51.100.0/24,DE\n").unwrap();
    let err = open1(&text, None).unwrap_err();
    assert!(matches!(err, GeoError::Invalid { .. }), "{err:?}");
    assert!(err.to_string().contains("text.mmdb"), "{err}");

    let good = tmp("to-truncate.mmdb");
    write_mmdb(
        &good,
        &[(net("198.51.100.0/24"), "DE"), (net("2001:db8::/32"), "FR")],
        Layout::GeoIp2Country,
        6,
    )
    .unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let cut = tmp("truncated.mmdb");
    for len in [1, 16, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&cut, &bytes[..len]).unwrap();
        assert!(open1(&cut, None).is_err(), "truncated to {len}");
    }
    // Only networks without a valid country: empty.
    let none = tmp("only-invalid.mmdb");
    write_mmdb(&none, &[(net("198.51.100.0/24"), "None")], Layout::Flat, 4).unwrap();
    assert!(matches!(open1(&none, None), Err(GeoError::Empty { .. })));
}

#[test]
fn geo_from_networks_sorts_and_stays_disjoint() {
    let v4: Vec<(Ipv4Net, _)> = vec![
        ("203.0.113.0/24".parse().unwrap(), *b"SE"),
        ("198.51.100.0/24".parse().unwrap(), *b"DE"),
        ("198.51.100.128/25".parse().unwrap(), *b"US"),
    ];
    let v6: Vec<(Ipv6Net, _)> = vec![("2001:db8::/32".parse().unwrap(), *b"FR")];
    let db = GeoDb::from_networks(v4, v6);
    assert_eq!(db.info().database_type, "in-memory");
    let nets: Vec<_> = db.networks_v4().iter().map(|(n, c)| format!("{n}={}", c[0] as char)).collect();
    assert_eq!(nets, ["198.51.100.0/25=D", "198.51.100.128/25=U", "203.0.113.0/24=S"]);
    assert_eq!(code(&db, "198.51.100.200").as_deref(), Some("US"));
    assert_eq!(code(&db, "::ffff:203.0.113.1").as_deref(), Some("SE"));
    assert_eq!(code(&db, "2001:db8::5").as_deref(), Some("FR"));
    assert_eq!(code(&db, "0.0.0.0"), None);
    assert_eq!(code(&db, "::"), None);
}
