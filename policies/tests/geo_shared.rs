//! Geo-IP reader against the real databases in `../shared/geo` (MaxMind's test databases and
//! their JSON sources, the full-size iptoasn database, MaxMind's corrupt `bad-data/` files).
//! Skipped, with a message, when that folder is absent. `RINGFENCE_GEO_DIR` overrides it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use ringfence_policy::geo::{GeoDb, GeoError};

/// The shared geo data, or `None` after recording `test` as skipped (counted as such by
/// `cargo xtask test`, not as passed).
fn geo_dir(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("RINGFENCE_GEO_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/geo"));
    if dir.is_dir() {
        Some(dir)
    } else {
        ringfence_tests::skip(
            test,
            &format!("../shared/geo not found ({}; set RINGFENCE_GEO_DIR)", dir.display()),
        );
        None
    }
}

fn open(path: PathBuf) -> GeoDb {
    GeoDb::open(std::slice::from_ref(&path), None).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn code(db: &GeoDb, addr: IpAddr) -> Option<String> {
    db.lookup(addr).map(|(_, c)| String::from_utf8(c.to_vec()).unwrap())
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A JSON source key such as `"2001:218::/32"`, `"1.2.3.0/24"` or `"::81.2.69.142/127"` (an
/// IPv4 network written inside ::/96, possibly with host bits set) as a network.
fn json_net(key: &str) -> IpNet {
    let net: IpNet = key.parse().unwrap_or_else(|e| panic!("{key}: {e}"));
    match net.trunc() {
        IpNet::V6(n) if n.prefix_len() >= 96 && u128::from(n.network()) >> 32 == 0 => {
            let v4 = Ipv4Addr::from(u128::from(n.network()) as u32);
            IpNet::V4(Ipv4Net::new(v4, n.prefix_len() - 96).unwrap())
        }
        n => n,
    }
}

fn last(net: IpNet) -> IpAddr {
    net.broadcast()
}

/// Every network in a MaxMind JSON source resolves, at its first and last address, to its
/// `country.iso_code` (else `registered_country.iso_code`, else nothing).
fn check_against_json(dir: &Path, name: &str) {
    let db = open(dir.join(format!("maxmind-test/{name}.mmdb")));
    let text = std::fs::read_to_string(dir.join(format!("maxmind-test/{name}.json"))).unwrap();
    let entries: Vec<serde_json::Map<String, serde_json::Value>> = serde_json::from_str(&text).unwrap();
    let (mut checked, mut with_code) = (0, 0);
    for entry in &entries {
        for (key, record) in entry {
            let net = json_net(key);
            let iso = |k: &str| record.get(k).and_then(|c| c.get("iso_code")).and_then(|c| c.as_str());
            let want = iso("country").or_else(|| iso("registered_country"));
            for addr in [net.network(), last(net)] {
                assert_eq!(code(&db, addr).as_deref(), want, "{name}: {key} ({net}) at {addr}");
            }
            checked += 1;
            with_code += usize::from(want.is_some());
        }
    }
    eprintln!(
        "{name}: {checked} JSON networks checked ({with_code} with a country); table {} v4 + {} v6",
        db.networks_v4().len(),
        db.networks_v6().len()
    );
    assert!(with_code > 200, "{name}: only {with_code} networks checked");
    // Tables are sorted and disjoint, and no IPv6 network repeats IPv4 data.
    let v4 = db.networks_v4();
    assert!(v4.windows(2).all(|w| w[0].0.broadcast() < w[1].0.network()));
    let v6 = db.networks_v6();
    assert!(v6.windows(2).all(|w| w[0].0.broadcast() < w[1].0.network()));
    let excluded: [Ipv6Net; 3] =
        ["::/96".parse().unwrap(), "::ffff:0:0/96".parse().unwrap(), "2002::/16".parse().unwrap()];
    for (n, _) in v6 {
        assert!(excluded.iter().all(|x| !x.contains(n) && !n.contains(x)), "{n} in v6 table");
    }
}

#[test]
fn geo_maxmind_country_test_matches_json() {
    let Some(dir) = geo_dir("geo_shared::geo_maxmind_country_test_matches_json") else { return };
    check_against_json(&dir, "GeoIP2-Country-Test");
    check_against_json(&dir, "GeoLite2-Country-Test");
}

#[test]
fn geo_maxmind_sample_truths() {
    let Some(dir) = geo_dir("geo_shared::geo_maxmind_sample_truths") else { return };
    let db = open(dir.join("maxmind-test/GeoIP2-Country-Test.mmdb"));
    for (addr, want) in [
        ("81.2.69.142", Some("GB")),
        ("::ffff:81.2.69.142", Some("GB")),
        ("216.160.83.56", Some("US")),
        ("89.160.20.128", Some("SE")),
        ("2001:218::1", Some("JP")),
        ("8.8.8.8", None),
    ] {
        assert_eq!(code(&db, ip(addr)).as_deref(), want, "{addr}");
    }
    let info = db.info();
    assert_eq!(info.database_type, "GeoIP2-Country");
    assert_eq!(info.field, "country.iso_code");
    assert_eq!(info.ip_versions, [6]);
    assert_eq!(info.build_date().len(), 10);
    // The City database has the same layout.
    let city = open(dir.join("maxmind-test/GeoIP2-City-Test.mmdb"));
    assert_eq!(code(&city, ip("81.2.69.142")).as_deref(), Some("GB"));
    assert_eq!(code(&city, ip("2001:218::1")).as_deref(), Some("JP"));
}

#[test]
fn geo_iptoasn_flat_layout() {
    let Some(dir) = geo_dir("geo_shared::geo_iptoasn_flat_layout") else { return };
    let v4_path = dir.join("iptoasn-country/iptoasn-country-ipv4.mmdb");
    let v6_path = dir.join("iptoasn-country/iptoasn-country-ipv6.mmdb");
    let started = Instant::now();
    let db = GeoDb::open(&[v4_path.clone(), v6_path.clone()], None).unwrap();
    eprintln!("iptoasn ipv4+ipv6: {:?} in {:?}", db.info(), started.elapsed());
    for (addr, want) in [
        ("8.8.8.8", Some("US")),
        ("81.2.69.142", Some("GB")),
        ("185.4.52.1", Some("AD")),
        ("::ffff:8.8.8.8", Some("US")),
        ("10.0.0.1", None),
    ] {
        assert_eq!(code(&db, ip(addr)).as_deref(), want, "{addr}");
    }
    let info = db.info();
    assert_eq!(info.field, "country_code");
    assert!(info.networks_v4 > 300_000 && info.networks_v6 > 80_000, "{info:?}");
    let google_v6 = Ipv6Addr::new(0x2001, 0x4860, 0x4860, 0, 0, 0, 0, 0x8888);
    assert_eq!(code(&db, google_v6.into()).as_deref(), Some("US"));

    let only_v4 = open(v4_path);
    assert_eq!(only_v4.info().ip_versions, [4]);
    assert_eq!(code(&only_v4, ip("185.4.52.1")).as_deref(), Some("AD"));
    assert!(only_v4.networks_v6().is_empty());
    assert_eq!(code(&only_v4, google_v6.into()), None);
}

/// Every corrupt database: an error (or, for one that happens to be valid, a database) —
/// never a panic, never a hang.
#[test]
fn geo_bad_data_is_rejected_cleanly() {
    let Some(dir) = geo_dir("geo_shared::geo_bad_data_is_rejected_cleanly") else { return };
    let mut files = vec![dir.join("maxmind-test/GeoIP2-City-Test-Invalid-Node-Count.mmdb")];
    let mut pending = vec![dir.join("maxmind-test/bad-data")];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                pending.push(p);
            } else {
                files.push(p);
            }
        }
    }
    files.sort();
    assert!(files.len() > 15, "{files:?}");
    let mut report = Vec::new();
    for file in files {
        let (tx, rx) = mpsc::channel();
        let f = file.clone();
        std::thread::spawn(move || {
            let started = Instant::now();
            let result = GeoDb::open(&[f], None);
            let _ = tx.send((result, started.elapsed()));
        });
        let (result, took) = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(r) => r,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("{}: no answer within 10 s", file.display()),
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!("{}: panicked", file.display()),
        };
        let outcome = match &result {
            Ok(db) => format!("ok ({} v4, {} v6)", db.networks_v4().len(), db.networks_v6().len()),
            Err(e) => {
                let msg = e.to_string();
                assert!(msg.contains(&*file.file_name().unwrap().to_string_lossy()), "{msg}");
                if let GeoError::Invalid { reason, .. } = e {
                    assert!(!reason.is_empty());
                }
                msg
            }
        };
        report.push(format!("{} [{took:?}]: {outcome}", file.strip_prefix(&dir).unwrap().display()));
    }
    eprintln!("{}", report.join("\n"));
}

/// Databases without a country field are rejected as such.
#[test]
fn geo_maxmind_format_tests_have_no_country() {
    let Some(dir) = geo_dir("geo_shared::geo_maxmind_format_tests_have_no_country") else { return };
    for name in ["MaxMind-DB-test-ipv4-24.mmdb", "MaxMind-DB-test-mixed-24.mmdb"] {
        let path = dir.join("maxmind-test").join(name);
        match GeoDb::open(std::slice::from_ref(&path), None) {
            Err(GeoError::NoCountryField { path: p, tried }) => {
                assert_eq!(p, path);
                assert!(tried.contains(&"country.iso_code".to_string()));
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}
