//! Country rules enforced in the kernel from a geo-IP database the test generates (documentation
//! ranges mapped to countries). Run as root, serially (`cargo xtask test`).
use std::{path::Path, time::Duration};

use ipnet::IpNet;
use ringfence_policy::geo::fixture::{write_mmdb, Layout};
use ringfence_tests::{agent_bin, policy_head, policy_head_with, AgentProc, Enforced};

const WAIT: Duration = Duration::from_secs(10);
/// Hosts the database does not cover.
const UNKNOWN_V4: &str = "198.51.100.200";
const UNKNOWN_V6: &str = "2001:db8:30::10";

/// 198.51.100.0/25 and 2001:db8:10::/48 are in `home`; 203.0.113.0/24 and 2001:db8:20::/48 in
/// `away`; 198.51.100.128/25 and 2001:db8:30::/48 are in no network of the database.
fn write_db(path: &Path, home: &str, away: &str) {
    let nets: Vec<(IpNet, &str)> = [
        ("198.51.100.0/25", home),
        ("2001:db8:10::/48", home),
        ("203.0.113.0/24", away),
        ("2001:db8:20::/48", away),
        ("192.0.2.0/24", "US"),
    ]
    .iter()
    .map(|(n, c)| (n.parse().expect("network"), *c))
    .collect();
    let tmp = path.with_extension("new");
    write_mmdb(&tmp, &nets, Layout::GeoIp2Country, 6).expect("write test database");
    // Replace the way geoipupdate does: a new file renamed over the old one.
    std::fs::rename(&tmp, path).expect("rename database into place");
}

fn geo_scenario(name: &str, policy: &str) -> Enforced {
    let mut e = Enforced::prepare_with_hosts(name, &[UNKNOWN_V4, UNKNOWN_V6], &[443, 53], policy);
    let db = e.dir().join("country.mmdb");
    write_db(&db, "DE", "CN");
    e.agent_args = vec!["--geoip-db".into(), db.into()];
    e.start_agent();
    e
}

fn countries_rule(name: &str, action: &str, to: &str) -> String {
    format!("    - name: {name}\n      action: {action}\n      to: {{ {to} }}\n")
}

#[test]
fn deny_by_country_tcp_udp_ipv4_ipv6() {
    let policy =
        policy_head("deny-cn", "enforce", "allow") + &countries_rule("no-cn", "deny", "countries: [CN]");
    let e = geo_scenario("geodeny", &policy);
    e.lab.tcp("203.0.113.5", 443).assert_eperm("tcp4 to CN");
    e.lab.udp("203.0.113.5", 53).assert_eperm("udp4 to CN");
    e.lab.tcp("2001:db8:20::10", 443).assert_eperm("tcp6 to CN");
    e.lab.udp_connected("2001:db8:20::10", 53).assert_eperm("udp6 to CN");
    e.lab.tcp("198.51.100.10", 443).assert_ok("tcp4 to DE");
    e.lab.udp("2001:db8:10::10", 53).assert_ok("udp6 to DE");
    e.lab.tcp(UNKNOWN_V4, 443).assert_ok("unknown: the default (allow) decides");
    let ev = e.agent().wait_for_event("deny to CN", WAIT, |v| v["dst"] == "203.0.113.5");
    assert_eq!(
        (ev["verdict"].as_str(), ev["rule"].as_str(), ev["country"].as_str()),
        (Some("deny"), Some("no-cn"), Some("CN")),
        "{ev}"
    );
}

#[test]
fn allow_only_a_country_group() {
    let policy = policy_head_with("only-de", "enforce", "deny", "  countryGroups:\n    home: [DE, FR]\n")
        + &countries_rule("home-only", "allow", "countryGroups: [home]");
    let e = geo_scenario("geoallow", &policy);
    e.lab.tcp("198.51.100.10", 443).assert_ok("tcp4 to DE");
    e.lab.udp("198.51.100.20", 53).assert_ok("udp4 to DE");
    e.lab.tcp("2001:db8:10::10", 443).assert_ok("tcp6 to DE");
    e.lab.udp("2001:db8:10::10", 53).assert_ok("udp6 to DE");
    e.lab.tcp("203.0.113.5", 443).assert_eperm("CN is not in the group");
    e.lab.udp("2001:db8:20::10", 53).assert_eperm("udp6 to CN");
    e.lab.tcp(UNKNOWN_V6, 443).assert_eperm("unknown: the default (deny) decides");
    let ev = e.agent().wait_for_event("allow to DE", WAIT, |v| v["dst"] == "198.51.100.10");
    assert_eq!((ev["rule"].as_str(), ev["country"].as_str()), (Some("home-only"), Some("DE")), "{ev}");
}

#[test]
fn unknown_country_allow_and_deny() {
    let allow_unknown = policy_head_with("unknown-allow", "enforce", "deny", "  unknownCountry: allow\n")
        + &countries_rule("de", "allow", "countries: [DE]");
    let mut e = geo_scenario("geounk", &allow_unknown);
    e.lab.tcp(UNKNOWN_V4, 443).assert_ok("unknown v4 allowed by unknownCountry");
    e.lab.udp(UNKNOWN_V6, 53).assert_ok("unknown v6 allowed by unknownCountry");
    e.lab.tcp("203.0.113.5", 443).assert_eperm("a known country no rule names: the default decides");
    e.lab.tcp("198.51.100.10", 443).assert_ok("DE allowed");

    let deny_unknown = policy_head_with("unknown-deny", "enforce", "allow", "  unknownCountry: deny\n")
        + &countries_rule("no-cn", "deny", "countries: [CN]");
    e.replace_policy(&deny_unknown);
    e.lab.tcp(UNKNOWN_V4, 443).assert_eperm("unknown v4 denied by unknownCountry");
    e.lab.tcp(UNKNOWN_V6, 443).assert_eperm("unknown v6 denied by unknownCountry");
    e.lab.tcp("198.51.100.10", 443).assert_ok("a known country no rule names: default allow");
    e.lab.tcp("203.0.113.5", 443).assert_eperm("CN denied");
    let ev = e
        .agent()
        .wait_for_event("unknownCountry deny", WAIT, |v| v["dst"] == UNKNOWN_V6 && v["verdict"] == "deny");
    assert_eq!(ev["rule"], "unknownCountry", "{ev}");
    e.agent.as_mut().expect("agent").terminate();
}

#[test]
fn cidr_rules_beat_country_rules() {
    let policy = policy_head("cidr-first", "enforce", "allow")
        + &countries_rule("no-de", "deny", "countries: [DE]")
        + &countries_rule("store", "allow", "cidrs: [198.51.100.10/32]")
        + &countries_rule("cn-ok", "allow", "countries: [CN]")
        + &countries_rule("one-cn-host", "deny", "cidrs: [203.0.113.5/32]");
    let e = geo_scenario("geocidr", &policy);
    e.lab.tcp("198.51.100.10", 443).assert_ok("a CIDR allow beats a country deny");
    e.lab.tcp("198.51.100.20", 443).assert_eperm("the country deny applies elsewhere");
    e.lab.tcp("203.0.113.5", 443).assert_eperm("a CIDR deny beats a country allow");
    e.lab.tcp("2001:db8:20::10", 443).assert_ok("the country allow applies elsewhere");
}

#[test]
fn replacing_the_database_changes_verdicts_live_and_a_corrupt_one_is_rejected() {
    let policy =
        policy_head("deny-cn", "enforce", "allow") + &countries_rule("no-cn", "deny", "countries: [CN]");
    let e = geo_scenario("geoswap", &policy);
    e.lab.tcp("203.0.113.5", 443).assert_eperm("CN before the update");
    e.lab.tcp("198.51.100.10", 443).assert_ok("DE before the update");
    let status = e.status();
    assert_eq!(status["geo"]["database_type"], "Ringfence-Test-Country", "{status}");
    assert!(status["geo"]["build_date"].as_str().is_some_and(|d| d.len() == 10), "{status}");

    // The networks swap countries: the agent notices, recompiles and swaps with no gap.
    let db = e.dir().join("country.mmdb");
    write_db(&db, "CN", "JP");
    e.agent().wait_for_message("geo database applied", WAIT);
    e.lab.tcp("203.0.113.5", 443).assert_ok("now JP");
    e.lab.tcp("198.51.100.10", 443).assert_eperm("now CN");
    e.lab.udp("2001:db8:10::10", 53).assert_eperm("now CN (v6)");

    // A corrupt replacement is rejected; the database in force stays.
    let tmp = db.with_extension("bad");
    std::fs::write(&tmp, b"this is not a MaxMind database").expect("write");
    std::fs::rename(&tmp, &db).expect("rename");
    let rejected = e.agent().wait_for_message("geo database rejected; the database in force stays", WAIT);
    assert!(rejected["error"].as_str().unwrap_or("").contains("country.mmdb"), "names the file: {rejected}");
    e.lab.tcp("198.51.100.10", 443).assert_eperm("still the previous database");
    e.lab.tcp("203.0.113.5", 443).assert_ok("still the previous database");
}

#[test]
fn countries_without_a_database_or_with_a_bad_one_are_config_errors() {
    let policy =
        policy_head("deny-cn", "enforce", "allow") + &countries_rule("no-cn", "deny", "countries: [CN]");
    let e = Enforced::prepare("geocfg", &[], &policy);
    let bad_db = e.dir().join("bad.mmdb");
    std::fs::write(&bad_db, b"garbage").expect("write");
    for (extra, needle) in
        [(vec![], "--geoip-db"), (vec!["--geoip-db".into(), bad_db.clone().into_os_string()], "bad.mmdb")]
    {
        let mut agent =
            AgentProc::spawn_with(&agent_bin(), &e.policy, e.lab.cgroup_path(), &e.bpffs(), &extra, false);
        let status = agent.wait_exit(WAIT);
        let log = serde_json::to_string(&agent.lines()).expect("json");
        assert_eq!(status.code(), Some(64), "{log}");
        assert!(log.contains(needle), "missing {needle:?}: {log}");
    }
    assert!(!e.bpffs().join("links").exists(), "nothing may be attached after a config error");
}
