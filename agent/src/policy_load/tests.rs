use std::path::Path;

use ringfence_policy::{compile, geo::GeoDb, CountryCode};

use super::*;

const EXFIL_POLICY: &str = "apiVersion: ringfence.dev/v1\nkind: EgressPolicy\nmetadata: { name: guard }\nspec:\n  defaultAction: allow\n  exfiltration:\n    approvedSinks: { countries: [DE] }\n    bulk: { bytes: 1GB, window: 1m }\n";

fn loader(path: &Path, packet_path: bool) -> PolicyLoader {
    PolicyLoader::plain(PolicySource::File(path.to_path_buf()), packet_path)
}

fn geo() -> GeoDb {
    let de: CountryCode = *b"DE";
    GeoDb::from_networks(vec![("198.51.100.0/24".parse().unwrap(), de)], Vec::new())
}

#[test]
fn unreadable_policy_names_the_file() {
    let Err(errors) = loader(Path::new("/nonexistent/ringfence.yaml"), false).load(None) else {
        panic!("must fail")
    };
    assert!(errors.0.iter().any(|e| e.contains("/nonexistent/ringfence.yaml")), "{errors:?}");
}

#[test]
fn a_geo_reload_runs_the_exfiltration_checks_like_a_file_reload() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, EXFIL_POLICY).unwrap();
    let without_packet_path = loader(&path, false);
    // A file reload (SIGHUP) and a geo database change both load through the same checks.
    let file_reload = without_packet_path.load(None).expect_err("no packet path, no database");
    let new_db = geo();
    let geo_reload = without_packet_path.load(Some(&new_db)).expect_err("still no packet path");
    assert!(
        geo_reload.0.iter().any(|e| e.contains("spec.exfiltration needs the packet path's flow counters")),
        "{geo_reload:?}"
    );
    assert!(file_reload.0.iter().any(|e| e.contains("approvedSinks names countries")), "{file_reload:?}");
    assert_eq!(geo_reload.0.len() + 1, file_reload.0.len(), "the database is the only difference");
    let loaded = loader(&path, true).load(Some(&new_db)).expect("packet path and database: valid");
    assert_eq!(loaded.policy.name, "guard");
}

#[test]
fn control_plane_peers_join_the_policy_peers() {
    let mut p = ringfence_policy::parse_policy(
        "apiVersion: ringfence.dev/v1\nkind: EgressPolicy\nmetadata: { name: x }\nspec:\n  defaultAction: allow\n  peers: { cidrs: [192.0.2.9/32] }\n",
    )
    .expect("policy");
    let extra: Vec<ipnet::IpNet> =
        ["192.0.2.2/32", "198.51.100.2/32", "192.0.2.9/32", "::ffff:192.0.2.7/128"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
    p.peers = merged_peers(&p, &extra);
    let got: Vec<String> = p.peers.iter().map(ToString::to_string).collect();
    assert_eq!(got, ["192.0.2.2/32", "192.0.2.7/32", "192.0.2.9/32", "198.51.100.2/32"]);
    let compiled = compile(&p, None).expect("compiles");
    assert_eq!(compiled.encrypt4.len(), 4, "every peer is a must-encrypt destination");
}
