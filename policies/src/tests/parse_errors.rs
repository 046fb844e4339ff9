//! Parsing invalid policies: every problem reported at once, each at its line and column.

use super::{assert_diag, doc, parse_err};

#[test]
fn all_errors_are_reported_at_once_with_positions() {
    let src = "\
apiVersion: ringfence.dev/v2
kind: EgressPolicy
metadata:
  name: Bad_Name
spec:
  defaultAction: maybe
  egress:
    - name: x
      acton: allow
      to: {cidrs: [10.0.0.1/8]}
      ports: [{port: 70000, protocol: tcp}]
";
    let diags = parse_err(src);
    assert_diag(&diags, 1, 13, "unsupported apiVersion \"ringfence.dev/v2\"");
    assert_diag(&diags, 4, 9, "invalid policy name \"Bad_Name\"");
    assert_diag(&diags, 6, 18, "invalid defaultAction \"maybe\" in spec (expected one of: allow, deny)");
    assert_diag(&diags, 8, 7, "missing required field \"action\" in rule \"x\"");
    assert_diag(
        &diags,
        9,
        7,
        "unknown field \"acton\" in rule \"x\" (expected one of: name, action, to, ports, encryption)",
    );
    assert_diag(&diags, 10, 20, "has host bits set; did you mean \"10.0.0.0/8\"?");
    assert_diag(&diags, 11, 22, "invalid port \"70000\"");
    assert_eq!(diags.len(), 7, "{diags:#?}");
    let positions: Vec<_> = diags.iter().map(|d| (d.line, d.column)).collect();
    let mut sorted = positions.clone();
    sorted.sort();
    assert_eq!(positions, sorted, "diagnostics are ordered by position");
    assert_eq!(
        diags[0].to_string(),
        "1:13: error: unsupported apiVersion \"ringfence.dev/v2\" (expected \"ringfence.dev/v1\")"
    );
}

#[test]
fn unknown_fields_at_every_level() {
    let src = "\
apiVersion: ringfence.dev/v1
kind: EgressPolicy
labels: {}
metadata: {name: a, namespace: b}
spec:
  defaultAction: deny
  priority: 1
  egress:
    - name: r
      action: allow
      to: {cidrs: [10.0.0.0/8], hosts: [a]}
      ports: [{port: 1, proto: tcp}]
";
    let diags = parse_err(src);
    assert_diag(
        &diags,
        3,
        1,
        "unknown field \"labels\" at top level (expected one of: apiVersion, kind, metadata, spec)",
    );
    assert_diag(&diags, 4, 21, "unknown field \"namespace\" in metadata (expected one of: name)");
    assert_diag(
        &diags,
        7,
        3,
        "unknown field \"priority\" in spec (expected one of: mode, defaultAction, unknownCountry, countryGroups, peers, regions, crossBorder, exfiltration, rawSockets, workloadSelector, egress, ingress, defaultIngress, dns)",
    );
    assert_diag(
        &diags,
        11,
        33,
        "unknown field \"hosts\" in \"to\" of rule \"r\" (expected one of: cidrs, countries, countryGroups, fqdns)",
    );
    assert_diag(
        &diags,
        12,
        25,
        "unknown field \"proto\" in port entry 1 of rule \"r\" (expected one of: port, range, protocol)",
    );
    assert_eq!(diags.len(), 5, "{diags:#?}");
}

#[test]
fn missing_required_fields_and_wrong_kinds() {
    let diags = parse_err("kind: Pod\nmetadata: []\nspec:\n  egress: {}\n");
    assert_diag(&diags, 1, 1, "missing required field \"apiVersion\" at top level");
    assert_diag(&diags, 1, 7, "unsupported kind \"Pod\"");
    assert_diag(&diags, 2, 11, "expected a mapping for metadata, found a sequence");
    assert_diag(&diags, 4, 3, "missing required field \"defaultAction\" in spec");
    assert_diag(&diags, 4, 11, "expected a sequence for \"egress\" in spec, found a mapping");
    let diags = parse_err(&doc("  defaultAction: deny\n  egress:\n    - action: allow\n      to: 10.0.0.0/8\n    - name: b\n      action: allow\n"));
    assert_diag(&diags, 8, 7, "missing required field \"name\" in rule #1");
    assert_diag(&diags, 9, 11, "expected a mapping for \"to\" in rule #1, found a scalar");
    assert_diag(&diags, 10, 7, "missing required field \"to\" in rule \"b\"");
}

#[test]
fn duplicate_keys_and_rule_names() {
    let diags = parse_err(&doc(
        "  defaultAction: deny\n  defaultAction: allow\n  egress:\n    - {name: a, action: allow, action: deny, to: {cidrs: [10.0.0.0/8]}}\n    - {name: a, action: allow, to: {cidrs: [10.0.0.0/8]}}\n",
    ));
    assert_diag(&diags, 7, 3, "duplicate field \"defaultAction\" in spec (first given at line 6, column 3)");
    assert_diag(&diags, 9, 32, "duplicate field \"action\" in rule \"a\" (first given at line 9, column 17)");
    assert_diag(&diags, 10, 14, "duplicate rule name \"a\" (also used by rule 1 at line 9, column 14)");
    assert_eq!(diags.len(), 3, "{diags:#?}");
}

#[test]
fn port_range_and_protocol_validation() {
    let spec = "  defaultAction: deny\n  egress:\n    - name: r\n      action: allow\n      to: {cidrs: [10.0.0.0/8]}\n      ports:\n";
    let entries = [
        ("{port: 0}", "invalid port \"0\""),
        ("{port: 65536}", "invalid port \"65536\""),
        ("{port: https}", "invalid port \"https\""),
        ("{port: [1]}", "expected a port number for \"port\""),
        ("{range: \"10-5\"}", "start 10 is greater than end 5"),
        ("{range: \"0-5\"}", "invalid range \"0-5\""),
        ("{range: \"5\"}", "invalid range \"5\""),
        ("{range: \"1-65536\"}", "invalid range \"1-65536\""),
        ("{port: 1, range: \"1-2\"}", "has both \"port\" and \"range\""),
        ("{protocol: tcp}", "needs \"port\" (e.g. 443) or \"range\""),
        (
            "{port: 1, protocol: TCP}",
            "invalid protocol \"TCP\" in port entry 1 of rule \"r\" (expected one of: tcp, udp, any, icmp)",
        ),
        ("{port: 1, protocol: icmp}", "has protocol icmp, which has no ports"),
    ];
    for (entry, needle) in entries {
        let diags = parse_err(&doc(&format!("{spec}        - {entry}\n")));
        assert_eq!(diags.len(), 1, "{entry}: {diags:#?}");
        assert!(diags[0].message.contains(needle), "{entry}: {}", diags[0]);
        assert_eq!(diags[0].line, 12, "{entry}");
    }
    let diags = parse_err(&doc(&format!("{spec}        []\n")));
    assert_diag(&diags, 12, 9, "must not be empty; omit \"ports\"");
    let many: Vec<String> = (1..=17).map(|p| format!("{{port: {p}}}")).collect();
    let diags = parse_err(&doc(&format!("{spec}        [{}]\n", many.join(", "))));
    assert_diag(&diags, 12, 9, "17 port entries in rule \"r\", more than the limit of 16");
    let ok: Vec<String> = (1..=16).map(|p| format!("{{port: {p}}}")).collect();
    super::parse_ok(&doc(&format!("{spec}        [{}]\n", ok.join(", "))));
}

#[test]
fn cidr_validation() {
    let diags = parse_err(&doc(
        "  defaultAction: deny\n  egress:\n    - {name: r, action: allow, to: {cidrs: [10.0.0.1/8, '2001:db8::1/32', 10.0.0.0/33, example.com, []]}}\n    - {name: s, action: allow, to: {cidrs: []}}\n",
    ));
    assert_diag(
        &diags,
        8,
        45,
        "CIDR \"10.0.0.1/8\" in rule \"r\" has host bits set; did you mean \"10.0.0.0/8\"?",
    );
    assert_diag(&diags, 8, 57, "did you mean \"2001:db8::/32\"?");
    assert_diag(&diags, 8, 75, "invalid CIDR \"10.0.0.0/33\"");
    assert_diag(&diags, 8, 88, "invalid CIDR \"example.com\"");
    assert_diag(&diags, 8, 101, "expected a string for a CIDR in rule \"r\", found a sequence");
    assert_diag(&diags, 9, 44, "\"to.cidrs\" in rule \"s\" must not be empty");
    assert_eq!(diags.len(), 6, "{diags:#?}");
}

#[test]
fn yaml_syntax_errors_and_documents() {
    let diags = parse_err("apiVersion: ringfence.dev/v1\nkind: [EgressPolicy\nspec: {}\n");
    assert_eq!(diags.len(), 1);
    assert!(diags[0].message.starts_with("YAML syntax error"), "{}", diags[0]);
    assert_eq!(diags[0].line, 3);
    let diags = parse_err("");
    assert_diag(&diags, 1, 1, "empty document");
    let diags = parse_err(&format!("{}---\nfoo: 1\n", doc("  defaultAction: deny\n")));
    assert_diag(&diags, 7, 1, "exactly one YAML document");
    let diags = parse_err("a: &x [1]\nb: *y\n");
    assert!(diags[0].message.starts_with("YAML syntax error"), "{}", diags[0]);
}

#[test]
fn rule_name_and_value_types() {
    let diags = parse_err(&doc("  mode: strict\n  defaultAction: deny\n  egress:\n    - {name: '', action: permit, to: {cidrs: [10.0.0.0/8]}}\n    - {name: [x], action: allow, to: {cidrs: [10.0.0.0/8]}}\n"));
    assert_diag(&diags, 6, 9, "invalid mode \"strict\" in spec (expected one of: enforce, audit)");
    assert_diag(&diags, 9, 14, "rule name in rule #1 must not be empty");
    assert_diag(&diags, 9, 26, "invalid action \"permit\" in rule #1");
    assert_diag(&diags, 10, 14, "expected a string for \"name\" in rule #2, found a sequence");
}

#[test]
fn icmp_entries_take_no_port_and_raw_sockets_has_two_values() {
    let errors = super::parse_err(&super::doc(
        "  defaultAction: deny\n  rawSockets: maybe\n  egress:\n    - {name: a, action: allow, to: {cidrs: [10.0.0.0/8]}, ports: [{port: 7, protocol: icmp}]}\n",
    ));
    let text = format!("{errors:?}");
    assert!(text.contains("protocol icmp, which has no ports"), "{text}");
    assert!(text.contains("rawSockets") && text.contains("policy"), "{text}");
    assert!("198.51.100.7:53/icmp".parse::<crate::Destination>().is_err(), "ICMP has no port");
}
