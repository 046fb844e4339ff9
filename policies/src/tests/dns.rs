//! Domain names: `to.fqdns`, `spec.dns`, their errors and their kernel form.

use ringfence_common::{NAME_EXACT, NAME_WILDCARD};

use super::{doc, parse_err, parse_ok};
use crate::{compile, Fqdn};

const SPEC: &str = "  defaultAction: deny
  dns:
    resolvers: [192.0.2.53, \"2001:db8::53\"]
    minTTL: 30s
  egress:
    - name: hub
      action: allow
      to: {fqdns: [HuggingFace.co., \"*.hf.co\", pypi.org]}
      ports: [{port: 443, protocol: tcp}]
    - name: hub-http
      action: allow
      to: {fqdns: [huggingface.co], cidrs: [198.51.100.0/24]}
      ports: [{port: 80, protocol: tcp}]
";

#[test]
fn names_and_resolvers_parse_and_compile() {
    let p = parse_ok(&doc(SPEC));
    assert_eq!(p.dns.resolvers.len(), 2);
    assert_eq!(p.dns.min_ttl_secs, 30);
    let names: Vec<&str> = p.rules[0].fqdns.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(names, ["*.hf.co", "huggingface.co", "pypi.org"]);
    assert!(p.uses_dns());
    let c = compile(&p, None).expect("compiles");
    assert!(c.dns);
    assert_eq!(c.ttl_floor, 30);
    assert_eq!(c.names.len(), 3);
    let hf = c.names.iter().find(|n| n.pattern.0 == "huggingface.co").expect("huggingface.co");
    assert_eq!(hf.kind, NAME_EXACT);
    // Both rules' ports are in the name's list, in rule order.
    let items = &c.lists[hf.list_id as usize];
    assert_eq!(items.len, 2);
    assert_eq!((items.items[0].port_lo, items.items[1].port_lo), (443, 80));
    let wildcard = c.names.iter().find(|n| n.pattern.is_wildcard()).expect("wildcard");
    assert_eq!((wildcard.kind, wildcard.hash), (NAME_WILDCARD, Fqdn("hf.co".into()).kernel_key().1));
    assert!(!c.doh.is_empty() && c.doh.iter().all(|a| !p.dns.resolvers.contains(a)));
    // A policy without names or resolvers has none of it.
    let plain = compile(&parse_ok(&doc("  defaultAction: deny\n")), None).expect("compiles");
    assert!(!plain.dns && plain.names.is_empty() && plain.doh.is_empty());
}

#[test]
fn deny_rules_cannot_name_domains() {
    let src = doc("  defaultAction: allow\n  dns: {resolvers: [192.0.2.53]}\n  egress:\n    - name: no-hub\n      action: deny\n      to: {fqdns: [huggingface.co]}\n");
    let diags = parse_err(&src);
    assert!(
        diags
            .iter()
            .any(|d| d.message.contains("\"to.fqdns\" in rule \"no-hub\" is only valid on allow rules")),
        "{diags:#?}"
    );
}

#[test]
fn names_need_resolvers_and_valid_syntax() {
    let no_resolvers = doc("  defaultAction: deny\n  egress:\n    - name: hub\n      action: allow\n      to: {fqdns: [pypi.org]}\n");
    let diags = parse_err(&no_resolvers);
    assert!(diags.iter().any(|d| d.message.contains("spec.dns.resolvers is not set")), "{diags:#?}");
    for (bad, why) in [
        ("\"a.*.example.com\"", "only allowed as the whole first label"),
        ("com", "at least two labels"),
        ("\"-x.example.com\"", "must not start or end"),
        ("\"exa mple.com\"", "only letters, digits"),
    ] {
        let src = doc(&format!(
            "  defaultAction: deny\n  dns: {{resolvers: [192.0.2.53]}}\n  egress:\n    - name: r\n      action: allow\n      to: {{fqdns: [{bad}]}}\n"
        ));
        let diags = parse_err(&src);
        assert!(diags.iter().any(|d| d.message.contains(why)), "{bad}: {diags:#?}");
    }
    let bad_dns = doc("  defaultAction: deny\n  dns: {resolvers: [resolver.local], minTTL: 100000}\n");
    let diags = parse_err(&bad_dns);
    assert!(diags.iter().any(|d| d.message.contains("invalid resolver \"resolver.local\"")));
    assert!(diags.iter().any(|d| d.message.contains("invalid \"minTTL\" \"100000\"")));
}

#[test]
fn names_carry_encryption_required() {
    let src = doc("  defaultAction: deny\n  dns: {resolvers: [192.0.2.53]}\n  egress:\n    - name: hub\n      action: allow\n      to: {fqdns: [huggingface.co]}\n      encryption: required\n");
    let c = compile(&parse_ok(&src), None).expect("compiles");
    let list = &c.lists[c.names[0].list_id as usize];
    assert!(list.items[0].encrypt(), "learned addresses of the name must leave encrypted");
}

/// The kernel learns an answer under the longest pattern that matches the question, so an exact
/// name under a wildcard must carry the wildcard's ports too.
#[test]
fn a_name_under_a_wildcard_keeps_the_wildcards_ports() {
    let src = doc("  defaultAction: deny\n  dns: {resolvers: [192.0.2.53]}\n  egress:\n    - name: cdn\n      action: allow\n      to: {fqdns: [\"*.hf.co\"]}\n      ports: [{port: 443, protocol: tcp}]\n    - name: plain\n      action: allow\n      to: {fqdns: [cdn.hf.co, \"*.eu.hf.co\"]}\n      ports: [{port: 80, protocol: tcp}]\n");
    let c = compile(&parse_ok(&src), None).expect("compiles");
    let ports = |name: &str| {
        let n = c.names.iter().find(|n| n.pattern.0 == name).unwrap_or_else(|| panic!("{name}"));
        let l = &c.lists[n.list_id as usize];
        l.items[..l.len as usize].iter().map(|i| (i.port_lo, i.rule_id)).collect::<Vec<_>>()
    };
    assert_eq!(ports("cdn.hf.co"), [(443, 1), (80, 2)]);
    assert_eq!(ports("*.eu.hf.co"), [(443, 1), (80, 2)]);
    assert_eq!(ports("*.hf.co"), [(443, 1)]);
}

#[test]
fn approved_sinks_by_name_are_flagged_and_need_resolvers() {
    let exfil = "  exfiltration:\n    approvedSinks: {fqdns: [\"*.s3.corp.example\", Backup.Corp.Example.]}\n    budgets: {perDestination: 1GiB/1h}\n";
    let src = doc(&format!(
        "  defaultAction: deny\n  dns: {{resolvers: [192.0.2.53], minTTL: 30s}}\n  egress:\n    - name: hub\n      action: allow\n      to: {{fqdns: [\"*.corp.example\"]}}\n      ports: [{{port: 443, protocol: tcp}}]\n{exfil}"
    ));
    let p = parse_ok(&src);
    let sinks: Vec<&str> = p.sink_fqdns().iter().map(|f| f.0.as_str()).collect();
    assert_eq!(sinks, ["*.s3.corp.example", "backup.corp.example"]);
    let c = compile(&p, None).expect("compiles");
    let name = |n: &str| c.names.iter().find(|x| x.pattern.0 == n).unwrap_or_else(|| panic!("{n}"));
    // A sink name is learned like an allowed one and carries the allow rule covering it.
    let bucket = name("*.s3.corp.example");
    assert!(bucket.sink);
    assert_eq!(c.lists[bucket.list_id as usize].items[0].port_lo, 443);
    assert!(name("backup.corp.example").sink && !name("*.corp.example").sink);
    assert_eq!(c.budgets.as_ref().expect("budgets").config.sink_names_floor, 30);

    // A sink name alone (no allow rule names it) gets an empty list: approved, not allowed.
    let only = doc(&format!("  defaultAction: deny\n  dns: {{resolvers: [192.0.2.53]}}\n{exfil}"));
    let c = compile(&parse_ok(&only), None).expect("compiles");
    assert!(c.dns && c.names.iter().all(|n| n.sink && c.lists[n.list_id as usize].len == 0));

    let no_resolvers = doc(&format!("  defaultAction: deny\n{exfil}"));
    let diags = parse_err(&no_resolvers);
    assert!(
        diags
            .iter()
            .any(|d| d.message.contains("approvedSinks names domains (\"fqdns\") but spec.dns.resolvers")),
        "{diags:#?}"
    );
    let bad = doc("  defaultAction: deny\n  dns: {resolvers: [192.0.2.53]}\n  exfiltration:\n    approvedSinks: {fqdns: [\"a.*.example\"]}\n    rateLimit: 10MB/s\n");
    let diags = parse_err(&bad);
    assert!(diags.iter().any(|d| d.message.contains("in spec.exfiltration.approvedSinks")), "{diags:#?}");
}
