//! The reference precedence of CIDR rules: longest prefix, deny before allow, lowest rule id,
//! ports, the default action, IPv4-mapped destinations and audit mode.

use super::{doc, parse_ok};
use crate::{compile, Action, Destination, Policy};

const SPEC: &str = "  defaultAction: allow
  egress:
    - name: corp-allow
      action: allow
      to: {cidrs: [10.0.0.0/8]}
    - name: lab-https
      action: allow
      to: {cidrs: [10.1.0.0/16]}
      ports: [{port: 443, protocol: tcp}]
    - name: lab-deny-udp
      action: deny
      to: {cidrs: [10.1.0.0/16]}
      ports: [{range: 1-1024, protocol: udp}]
    - name: deny-wide
      action: deny
      to: {cidrs: [10.2.0.0/16]}
    - name: allow-narrow
      action: allow
      to: {cidrs: [10.2.3.0/24]}
    - name: deny-tie-a
      action: deny
      to: {cidrs: [10.3.0.0/16]}
    - name: deny-tie-b
      action: deny
      to: {cidrs: [10.3.0.0/16, 10.3.3.0/24]}
      ports: [{port: 22, protocol: tcp}]
";

fn policy() -> Policy {
    parse_ok(&doc(SPEC))
}

/// Evaluates with the reference and asserts the kernel model agrees.
fn check(p: &Policy, dest: &str, action: Action, rule: Option<u32>, prefix: Option<&str>) {
    let d: Destination = dest.parse().unwrap();
    let decision = p.evaluate(&d);
    assert_eq!((decision.action, decision.rule), (action, rule), "{dest}: {:#?}", decision.explanation);
    assert_eq!(decision.matched_prefix.map(|n| n.to_string()).as_deref(), prefix, "{dest}");
    assert!(!decision.explanation.is_empty());
    let compiled = compile(p, None).unwrap();
    let (kaction, krule) = compiled.evaluate(d.addr, d.port.unwrap_or(0), d.protocol.to_kernel());
    let expected = if decision.audited { Action::Deny } else { decision.action };
    assert_eq!(
        kaction,
        if expected == Action::Deny { ringfence_common::ACTION_DENY } else { ringfence_common::ACTION_ALLOW },
        "{dest}"
    );
    assert_eq!(krule, rule.unwrap_or(ringfence_common::RULE_DEFAULT), "{dest}");
}

#[test]
fn longest_prefix_wins_within_an_action() {
    let p = policy();
    check(&p, "10.1.2.3:443/tcp", Action::Allow, Some(2), Some("10.1.0.0/16"));
    check(&p, "10.9.9.9:443/tcp", Action::Allow, Some(1), Some("10.0.0.0/8"));
}

#[test]
fn port_mismatch_at_a_long_prefix_falls_back_to_a_shorter_prefix() {
    let p = policy();
    let d = p.evaluate(&"10.1.2.3:80/tcp".parse().unwrap());
    assert!(
        d.explanation.iter().any(|s| s.contains("80/tcp matches none of its ports (443/tcp)")),
        "{:#?}",
        d.explanation
    );
    check(&p, "10.1.2.3:80/tcp", Action::Allow, Some(1), Some("10.0.0.0/8"));
    check(&p, "10.1.2.3:2000/udp", Action::Allow, Some(1), Some("10.0.0.0/8"));
}

#[test]
fn deny_beats_allow_even_with_a_longer_allow_prefix() {
    let p = policy();
    check(&p, "10.1.2.3:53/udp", Action::Deny, Some(3), Some("10.1.0.0/16"));
    check(&p, "10.2.3.4:443/tcp", Action::Deny, Some(4), Some("10.2.0.0/16"));
    let d = p.evaluate(&"10.2.3.4:443/tcp".parse().unwrap());
    assert!(d.explanation.iter().any(|s| s.contains("deny rules take precedence")), "{:#?}", d.explanation);
}

#[test]
fn ties_go_to_the_lowest_rule_id_and_longer_deny_prefix_wins() {
    let p = policy();
    check(&p, "10.3.0.1:22/tcp", Action::Deny, Some(6), Some("10.3.0.0/16"));
    check(&p, "10.3.3.1:22/tcp", Action::Deny, Some(7), Some("10.3.3.0/24"));
    check(&p, "10.3.3.1:23/tcp", Action::Deny, Some(6), Some("10.3.0.0/16"));
    let d = p.evaluate(&"10.3.0.1:22/tcp".parse().unwrap());
    assert!(d.explanation.iter().any(|s| s.contains("tied with rule 7")), "{:#?}", d.explanation);
}

#[test]
fn default_action_applies_without_candidates() {
    let p = policy();
    check(&p, "192.0.2.1:443/tcp", Action::Allow, None, None);
    let deny_default = parse_ok(&doc(&SPEC.replace("defaultAction: allow", "defaultAction: deny")));
    check(&deny_default, "192.0.2.1:443/tcp", Action::Deny, None, None);
    check(&deny_default, "2001:db8::1", Action::Deny, None, None);
}

#[test]
fn missing_port_matches_only_rules_without_ports() {
    let p = policy();
    check(&p, "10.1.2.3/udp", Action::Allow, Some(1), Some("10.0.0.0/8"));
    check(&p, "10.3.3.1", Action::Deny, Some(6), Some("10.3.0.0/16"));
}

#[test]
fn ipv4_mapped_destinations_are_ipv4() {
    let p = policy();
    check(&p, "[::ffff:10.1.2.3]:53/udp", Action::Deny, Some(3), Some("10.1.0.0/16"));
    let mapped = parse_ok(&doc("  defaultAction: deny\n  egress:\n    - {name: m, action: allow, to: {cidrs: ['::ffff:198.51.100.0/120']}}\n"));
    check(&mapped, "198.51.100.9:1/tcp", Action::Allow, Some(1), Some("198.51.100.0/24"));
    check(&mapped, "::ffff:198.51.100.9", Action::Allow, Some(1), Some("198.51.100.0/24"));
    check(&mapped, "::ffff:198.51.101.9", Action::Deny, None, None);
}

#[test]
fn audit_mode_allows_denies_and_marks_them() {
    let p = parse_ok(&doc(&SPEC.replace("defaultAction: allow", "mode: audit\n  defaultAction: deny")));
    let d = p.evaluate(&"10.2.3.4:443/tcp".parse().unwrap());
    assert_eq!((d.action, d.audited, d.rule), (Action::Allow, true, Some(4)));
    let d = p.evaluate(&"192.0.2.1:443/tcp".parse().unwrap());
    assert_eq!((d.action, d.audited, d.rule), (Action::Allow, true, None));
    assert!(d.explanation.last().unwrap().contains("mode is audit"));
    let d = p.evaluate(&"10.9.9.9:443/tcp".parse().unwrap());
    assert_eq!((d.action, d.audited, d.rule), (Action::Allow, false, Some(1)));
    check(&p, "10.2.3.4:443/tcp", Action::Allow, Some(4), Some("10.2.0.0/16"));
    let compiled = compile(&p, None).unwrap();
    assert_eq!(compiled.mode, ringfence_common::MODE_AUDIT);
}
