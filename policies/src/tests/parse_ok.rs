//! Parsing valid policies: the documented example, defaults, IPv4-mapped CIDRs, YAML anchors,
//! a byte order mark, ICMP entries and `rawSockets`.

use ipnet::IpNet;

use super::{doc, parse_ok};
use crate::{Action, Mode, PortMatch, Protocol};

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

#[test]
fn happy_path_from_the_spec() {
    let src = r#"apiVersion: ringfence.dev/v1
kind: EgressPolicy
metadata: { name: training-egress }
spec:
  mode: enforce
  defaultAction: deny
  egress:
    - name: checkpoint-store
      action: allow
      to: { cidrs: [198.51.100.0/24, "2001:db8:10::/48"] }
      ports: [ { port: 443, protocol: tcp }, { range: "8000-8100", protocol: any } ]
    - name: block-meta
      action: deny
      to:
        cidrs:
          - 192.0.2.7
          - 2001:db8::1
"#;
    let p = parse_ok(src);
    assert_eq!(p.name, "training-egress");
    assert_eq!(p.mode, Mode::Enforce);
    assert_eq!(p.default_action, Action::Deny);
    assert_eq!(p.rules.len(), 2);
    let r = &p.rules[0];
    assert_eq!((r.id, r.name.as_str(), r.action), (1, "checkpoint-store", Action::Allow));
    assert_eq!(r.cidrs, vec![net("198.51.100.0/24"), net("2001:db8:10::/48")]);
    assert_eq!(
        r.ports,
        vec![
            PortMatch { lo: 443, hi: 443, protocol: Protocol::Tcp },
            PortMatch { lo: 8000, hi: 8100, protocol: Protocol::Any },
        ]
    );
    let r = &p.rules[1];
    assert_eq!((r.id, r.action), (2, Action::Deny));
    assert_eq!(r.cidrs, vec![net("192.0.2.7/32"), net("2001:db8::1/128")]);
    assert!(r.ports.is_empty());
    assert_eq!(p.rule(2).map(|r| r.name.as_str()), Some("block-meta"));
    assert_eq!(p.rule(0), None);
    assert_eq!(p.rule(3), None);
}

#[test]
fn defaults_mode_protocol_and_empty_egress() {
    let p = parse_ok(&doc("  defaultAction: allow\n"));
    assert_eq!((p.mode, p.default_action), (Mode::Enforce, Action::Allow));
    assert!(p.rules.is_empty());
    let p = parse_ok(&doc(
        "  mode: audit\n  defaultAction: deny\n  egress:\n    - {name: a, action: allow, to: {cidrs: [10.0.0.0/8]}, ports: [{port: 53}]}\n",
    ));
    assert_eq!(p.mode, Mode::Audit);
    assert_eq!(p.rules[0].ports, vec![PortMatch { lo: 53, hi: 53, protocol: Protocol::Any }]);
}

#[test]
fn ipv4_mapped_cidrs_become_ipv4() {
    let p = parse_ok(&doc(
        "  defaultAction: deny\n  egress:\n    - {name: a, action: allow, to: {cidrs: ['::ffff:198.51.100.0/120', '::ffff:192.0.2.1', '::ffff:0:0/96', '::/0']}}\n",
    ));
    assert_eq!(
        p.rules[0].cidrs,
        vec![net("198.51.100.0/24"), net("192.0.2.1/32"), net("0.0.0.0/0"), net("::/0")]
    );
}

#[test]
fn anchors_and_aliases_are_expanded() {
    let p = parse_ok(&doc(
        "  defaultAction: deny\n  egress:\n    - name: a\n      action: allow\n      to: &mirrors {cidrs: [203.0.113.0/24]}\n    - name: b\n      action: deny\n      to: *mirrors\n",
    ));
    assert_eq!(p.rules[1].cidrs, vec![net("203.0.113.0/24")]);
}

// Found probing the parser while fuzzing it: a UTF-8 byte order mark before a valid policy
// was refused ("did not find expected <document start>" at a later line).
#[test]
fn leading_byte_order_mark_is_ignored() {
    let text = doc(
        "  defaultAction: deny\n  egress:\n    - {name: a, action: allow, to: {cidrs: [203.0.113.0/24]}}\n",
    );
    assert_eq!(parse_ok(&format!("\u{feff}{text}")), parse_ok(&text));
    let diags = crate::parse_policy("\u{feff}apiVersion: x\n").unwrap_err();
    assert!(diags.iter().all(|d| d.line >= 1 && d.column >= 1), "{diags:?}");
    assert_eq!((diags[0].line, diags[0].column), (1, 1), "{diags:?}");
}

#[test]
fn icmp_port_entries_and_raw_sockets() {
    let p = parse_ok(&doc(
        "  defaultAction: deny\n  rawSockets: policy\n  egress:\n    - {name: ping, action: allow, to: {cidrs: [198.51.100.0/24]}, ports: [{protocol: icmp}, {port: 443, protocol: tcp}]}\n",
    ));
    assert_eq!(p.raw_sockets, crate::RawSockets::Policy);
    assert_eq!(
        p.rules[0].ports,
        vec![
            PortMatch { lo: 0, hi: u16::MAX, protocol: Protocol::Icmp },
            PortMatch { lo: 443, hi: 443, protocol: Protocol::Tcp }
        ]
    );
    assert_eq!(p.rules[0].ports[0].to_string(), "icmp");
    let default = parse_ok(&doc("  defaultAction: deny\n"));
    assert_eq!(
        default.raw_sockets,
        crate::RawSockets::Deny,
        "raw sockets are refused unless the policy says otherwise"
    );
    // The reference and the kernel model agree: icmp entries match ICMP only, `any` with ports
    // never matches ICMP, a rule without ports matches it.
    let d = |s: &str| s.parse::<crate::Destination>().unwrap();
    assert_eq!(p.evaluate(&d("198.51.100.7/icmp")).action, Action::Allow);
    assert_eq!(p.evaluate(&d("2001:db8::1/icmp")).action, Action::Deny);
    let compiled = crate::compile(&p, None).unwrap();
    let (action, rule) = compiled.evaluate("198.51.100.7".parse().unwrap(), 0, ringfence_common::PROTO_ICMP);
    assert_eq!((action, rule), (ringfence_common::ACTION_ALLOW, 1));
    assert!(compiled.raw_policy);
    let any = parse_ok(&doc(
        "  defaultAction: deny\n  egress:\n    - {name: web, action: allow, to: {cidrs: [198.51.100.0/24]}, ports: [{range: 1-65535}]}\n",
    ));
    assert_eq!(any.evaluate(&d("198.51.100.7/icmp")).action, Action::Deny, "ports never match ICMP");
}
