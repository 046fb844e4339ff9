//! Connect-time verdicts against the real kernel: TCP and UDP, IPv4 and IPv6, ports, protocols,
//! precedence, default action, audit mode and the events each verdict produces.
//! Run as root, serially (`cargo xtask test`).
use std::time::Duration;

use ringfence_tests::{policy_head, Enforced};

const WAIT: Duration = Duration::from_secs(5);

fn rule(name: &str, action: &str, cidrs: &str, ports: Option<&str>) -> String {
    let ports = ports.map(|p| format!("      ports: {p}\n")).unwrap_or_default();
    format!("    - name: {name}\n      action: {action}\n      to: {{ cidrs: [{cidrs}] }}\n{ports}")
}

#[test]
fn tcp_ipv4_allow_rule_and_default_deny() {
    let policy = policy_head("tcp4", "enforce", "deny")
        + &rule("store", "allow", "198.51.100.10/32", Some("[ { port: 443, protocol: tcp } ]"));
    let e = Enforced::start("tcp4", &[443, 8443], &policy);
    let ok = e.lab.tcp("198.51.100.10", 443);
    ok.assert_ok("allowed tcp connect");
    assert_eq!(ok.reply.as_deref(), Some("pong 4"), "data must flow both ways: {ok:?}");
    e.lab
        .probe(&["tcp", "198.51.100.10", "443", "--bytes", "1000000"])
        .assert_ok("1 MB over an allowed connection");
    e.lab.tcp("198.51.100.10", 8443).assert_eperm("same host, port not allowed");
    e.lab.tcp("203.0.113.5", 443).assert_eperm("host not allowed");

    // Every verdict is an event with who, where and why.
    let cgroup_id = std::fs::metadata(e.lab.cgroup_path())
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .expect("cgroup inode");
    let deny = e.agent().wait_for_event("deny of 203.0.113.5", WAIT, |v| v["dst"] == "203.0.113.5");
    assert_eq!(deny["verdict"], "deny", "{deny}");
    assert_eq!(deny["rule"], "default", "{deny}");
    assert_eq!(deny["port"], 443, "{deny}");
    assert_eq!(deny["protocol"], "tcp", "{deny}");
    assert_eq!(deny["comm"], "lab-probe", "{deny}");
    assert_eq!(deny["hook"], "rf_connect4", "{deny}");
    assert_eq!(deny["cgroup_id"], cgroup_id, "{deny}");
    assert!(deny["pid"].as_u64().unwrap_or(0) > 0, "{deny}");
    let allow = e.agent().wait_for_event("allow of 198.51.100.10:443", WAIT, |v| {
        v["dst"] == "198.51.100.10" && v["port"] == 443
    });
    assert_eq!(allow["verdict"], "allow", "{allow}");
    assert_eq!(allow["rule"], "store", "{allow}");
    assert_eq!(allow["rule_id"], 1, "{allow}");
}

#[test]
fn udp_ipv4_sendto_and_connected() {
    let policy = policy_head("udp4", "enforce", "deny")
        + &rule("dns", "allow", "198.51.100.20/32", Some("[ { port: 53, protocol: udp } ]"));
    let e = Enforced::start("udp4", &[53], &policy);
    e.lab.udp("198.51.100.20", 53).assert_ok("unconnected sendto (sendmsg4)");
    e.lab.udp_connected("198.51.100.20", 53).assert_ok("connected udp (connect4)");
    e.lab.udp("203.0.113.5", 53).assert_eperm("sendto to a denied host");
    e.lab.udp_connected("203.0.113.5", 53).assert_eperm("connect to a denied host");
    let ev = e
        .agent()
        .wait_for_event("sendmsg4 deny", WAIT, |v| v["hook"] == "rf_sendmsg4" && v["verdict"] == "deny");
    assert_eq!(ev["protocol"], "udp", "{ev}");
    assert_eq!(ev["dst"], "203.0.113.5", "{ev}");
}

#[test]
fn ipv6_tcp_and_udp() {
    let policy =
        policy_head("v6", "enforce", "deny") + &rule("store6", "allow", "\"2001:db8:10::/48\"", None);
    let e = Enforced::start("v6", &[443, 53], &policy);
    e.lab.tcp("2001:db8:10::10", 443).assert_ok("tcp6 allowed");
    e.lab.udp("2001:db8:10::10", 53).assert_ok("udp6 sendto allowed");
    e.lab.udp_connected("2001:db8:10::10", 53).assert_ok("udp6 connected allowed");
    e.lab.tcp("2001:db8:20::10", 443).assert_eperm("tcp6 default deny");
    e.lab.udp("2001:db8:20::10", 53).assert_eperm("udp6 sendto default deny");
    let ev = e
        .agent()
        .wait_for_event("connect6 deny", WAIT, |v| v["hook"] == "rf_connect6" && v["verdict"] == "deny");
    assert_eq!(ev["dst"], "2001:db8:20::10", "{ev}");
}

#[test]
fn ipv4_mapped_ipv6_is_decided_as_ipv4() {
    let policy = policy_head("mapped", "enforce", "deny") + &rule("store", "allow", "198.51.100.10/32", None);
    let e = Enforced::start("mapped", &[443, 53], &policy);
    e.lab.tcp("::ffff:198.51.100.10", 443).assert_ok("mapped address of an allowed IPv4 host");
    e.lab.udp("::ffff:198.51.100.10", 53).assert_ok("mapped udp sendto");
    e.lab.tcp("::ffff:203.0.113.5", 443).assert_eperm("mapped address of a denied IPv4 host");
    let ev = e.agent().wait_for_event("mapped deny", WAIT, |v| v["dst"] == "203.0.113.5");
    assert_eq!(ev["hook"], "rf_connect6", "the IPv6 hook decided: {ev}");
}

#[test]
fn ports_ranges_and_protocols() {
    let policy = policy_head("ports", "enforce", "deny")
        + &rule(
            "web",
            "allow",
            "198.51.100.10/32",
            Some("[ { range: \"8000-8100\", protocol: tcp }, { port: 53, protocol: any } ]"),
        );
    let e = Enforced::start("ports", &[8000, 8100, 8101, 53], &policy);
    e.lab.tcp("198.51.100.10", 8000).assert_ok("range start");
    e.lab.tcp("198.51.100.10", 8100).assert_ok("range end");
    e.lab.tcp("198.51.100.10", 8101).assert_eperm("just past the range");
    e.lab.udp("198.51.100.10", 8000).assert_eperm("range is tcp only");
    e.lab.udp("198.51.100.10", 53).assert_ok("protocol any: udp");
    e.lab.tcp("198.51.100.10", 53).assert_ok("protocol any: tcp");
}

#[test]
fn deny_beats_allow_and_longest_prefix_decides_the_rule() {
    let policy = policy_head("precedence", "enforce", "deny")
        + &rule("doc-net", "allow", "198.51.100.0/24, 203.0.113.5/32", None)
        + &rule("bad-host", "deny", "198.51.100.20/32", None)
        + &rule("bad-net", "deny", "203.0.113.0/24", Some("[ { port: 443, protocol: tcp } ]"));
    let e = Enforced::start("precedence", &[443, 8080], &policy);
    e.lab.tcp("198.51.100.10", 443).assert_ok("allowed by the /24");
    e.lab.tcp("198.51.100.20", 443).assert_eperm("a deny /32 inside an allowed /24");
    e.lab.tcp("203.0.113.5", 443).assert_eperm("a broader deny still beats a narrower allow");
    e.lab.tcp("203.0.113.5", 8080).assert_ok("deny rule's port does not match: the allow decides");
    let ev = e.agent().wait_for_event("bad-host", WAIT, |v| v["dst"] == "198.51.100.20");
    assert_eq!(ev["rule"], "bad-host", "{ev}");
    let ev = e
        .agent()
        .wait_for_event("allow 203.0.113.5:8080", WAIT, |v| v["dst"] == "203.0.113.5" && v["port"] == 8080);
    assert_eq!(ev["rule"], "doc-net", "{ev}");
}

#[test]
fn default_allow_with_deny_rules() {
    let policy = policy_head("default-allow", "enforce", "allow")
        + &rule("no-legacy", "deny", "\"2001:db8:20::/48\", 203.0.113.0/24", None);
    let e = Enforced::start("defallow", &[443, 53], &policy);
    e.lab.tcp("198.51.100.10", 443).assert_ok("default allow");
    e.lab.udp("2001:db8:10::10", 53).assert_ok("default allow v6");
    e.lab.tcp("203.0.113.5", 443).assert_eperm("deny rule v4");
    e.lab.udp("2001:db8:20::10", 53).assert_eperm("deny rule v6");
}

#[test]
fn audit_mode_allows_and_reports_would_deny() {
    let policy = policy_head("audit", "audit", "deny") + &rule("store", "allow", "198.51.100.10/32", None);
    let e = Enforced::start("audit", &[443], &policy);
    e.lab.tcp("203.0.113.5", 443).assert_ok("audit mode lets a would-deny through");
    e.lab.tcp("198.51.100.10", 443).assert_ok("allowed stays allowed");
    let ev = e.agent().wait_for_event("audit event", WAIT, |v| v["dst"] == "203.0.113.5");
    assert_eq!(ev["verdict"], "audit-deny", "{ev}");
    assert_eq!(ev["rule"], "default", "{ev}");
    let status = e.status();
    assert_eq!(status["policy"]["mode"], "audit", "{status}");
    assert!(status["counters"]["audited"].as_u64().unwrap_or(0) >= 1, "{status}");
}
