//! Encryption required by destination: plaintext to peer nodes, to destinations of rules that
//! require encryption, and (with crossBorder) to anything outside the home region is dropped on
//! the packet path and reported; other destinations are unaffected. Run as root, serially.
//! (WireGuard carrying such traffic is covered in wireguard.rs.)
use std::time::Duration;

use ringfence_tests::{policy_head, policy_head_with, Enforced};

const WAIT: Duration = Duration::from_secs(10);

fn packet_path(name: &str, policy: &str) -> Enforced {
    let mut e = Enforced::prepare(name, &[443, 53], policy);
    e.packet_path = true;
    e.start_agent();
    e
}

fn assert_blocked(e: &Enforced, addr: &str, what: &str) {
    let r = e.lab.probe(&["tcp", addr, "443", "--timeout-ms", "700"]);
    assert!(!r.ok, "{what}: plaintext to {addr} must not get through: {r:?}");
    assert!(!r.is_eperm(), "{what}: the connect itself is allowed; the packets are dropped: {r:?}");
    let ev = e.agent().wait_for_event(what, WAIT, |v| v["dst"] == addr && v["verdict"] == "plaintext-drop");
    assert_eq!(
        (ev["hook"].as_str(), ev["rule"].as_str()),
        (Some("rf_tc_egress"), Some("encryption-required")),
        "{ev}"
    );
    // The packet path has no process context: the process is the one whose connect() the
    // hooks allowed to that destination.
    assert_eq!(ev["comm"], "lab-probe", "{ev}");
    assert!(ev["pid"].as_u64().unwrap_or(0) > 0, "{ev}");
}

#[test]
fn plaintext_to_peer_nodes_is_dropped_and_reported() {
    let policy = policy_head_with(
        "peers",
        "enforce",
        "allow",
        "  peers: { cidrs: [198.51.100.10/32, \"2001:db8:10::/48\"] }\n",
    ) + "    - { name: placeholder, action: deny, to: { cidrs: [192.0.2.200/32] } }\n";
    let e = packet_path("encpeers", &policy);
    assert_blocked(&e, "198.51.100.10", "peer node over IPv4");
    assert_blocked(&e, "2001:db8:10::10", "peer node over IPv6");
    e.lab.tcp("198.51.100.20", 443).assert_ok("a destination not marked must-encrypt is unaffected");
    e.lab.tcp("2001:db8:20::10", 443).assert_ok("likewise over IPv6");
    let status = e.status();
    assert!(status["counters"]["plaintext_dropped"].as_u64().unwrap_or(0) > 0, "{status}");
}

#[test]
fn a_rule_can_require_encryption() {
    let policy = policy_head("rule-enc", "enforce", "deny")
        + "    - name: storage\n      action: allow\n      to: { cidrs: [203.0.113.0/24] }\n      encryption: required\n"
        + "    - name: web\n      action: allow\n      to: { cidrs: [198.51.100.0/24] }\n";
    let e = packet_path("encrule", &policy);
    assert_blocked(&e, "203.0.113.5", "allowed by a rule that requires encryption");
    e.lab.tcp("198.51.100.10", 443).assert_ok("allowed by a rule without the requirement");
}

#[test]
fn cross_border_traffic_must_be_encrypted() {
    let policy = policy_head_with("cross-border", "enforce", "allow", "  regions:\n    home: { cidrs: [198.51.100.0/24, 192.0.2.0/24, \"2001:db8:1::/48\", \"2001:db8:10::/48\"] }\n  crossBorder: { require: wireguard, homeRegion: home }\n") + "    - { name: placeholder, action: deny, to: { cidrs: [192.0.2.200/32] } }\n";
    let e = packet_path("encborder", &policy);
    assert_blocked(&e, "203.0.113.5", "outside the home region (IPv4)");
    assert_blocked(&e, "2001:db8:20::10", "outside the home region (IPv6)");
    e.lab.tcp("198.51.100.10", 443).assert_ok("inside the home region");
    e.lab.udp("2001:db8:10::10", 53).assert_ok("inside the home region (IPv6)");
}
