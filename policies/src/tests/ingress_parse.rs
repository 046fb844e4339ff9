//! Parsing `spec.workloadSelector`, `spec.ingress` and `spec.defaultIngress`.

use std::collections::BTreeMap;

use super::{assert_diag, doc, parse_err, parse_ok};
use crate::{Action, PortMatch, Protocol, Selector};

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

#[test]
fn workload_selector_and_ingress_rules() {
    let p = parse_ok(&doc(r#"  defaultAction: deny
  workloadSelector:
    matchLabels: {ringfence.dev/profile: eu-resident, slurm.job: "1234", tier: ""}
  peers: {cidrs: [198.51.100.0/26]}
  egress:
    - {name: web, action: allow, to: {cidrs: [192.0.2.0/24]}}
  ingress:
    - name: nccl
      action: allow
      from: {peers: true, workloads: {matchLabels: {ringfence.dev/profile: eu-resident}}}
      ports: [{range: "29500-29510", protocol: tcp}]
    - name: admin
      action: deny
      from: {cidrs: [203.0.113.0/24], countries: [DE], countryGroups: [eu]}
"#));
    let selector = p.workload_selector.as_ref().unwrap();
    assert_eq!(
        selector.match_labels,
        labels(&[("ringfence.dev/profile", "eu-resident"), ("slurm.job", "1234"), ("tier", "")])
    );
    assert_eq!(selector.to_string(), "{ringfence.dev/profile=eu-resident, slurm.job=1234, tier=}");
    assert_eq!(p.ingress.len(), 2);
    let (nccl, admin) = (&p.ingress[0], &p.ingress[1]);
    assert_eq!((nccl.id, nccl.name.as_str(), nccl.action), (1, "nccl", Action::Allow));
    assert!(nccl.peers && nccl.cidrs.is_empty() && nccl.countries.is_empty());
    assert_eq!(
        nccl.workloads,
        Some(Selector { match_labels: labels(&[("ringfence.dev/profile", "eu-resident")]) })
    );
    assert_eq!(nccl.ports, vec![PortMatch { lo: 29500, hi: 29510, protocol: Protocol::Tcp }]);
    assert_eq!(
        (admin.id, admin.action, admin.peers, admin.workloads.is_none()),
        (2, Action::Deny, false, true)
    );
    assert_eq!(admin.cidrs, vec!["203.0.113.0/24".parse().unwrap()]);
    assert!(admin.countries.len() > 20, "DE plus the EU members");
    assert_eq!(admin.country_groups, vec!["eu".to_owned()]);
    assert_eq!(p.default_ingress, Action::Deny, "spec.ingress given: defaultIngress defaults to deny");
    assert!(p.enforces_ingress());
    assert_eq!(p.ingress_rule(2).map(|r| r.name.as_str()), Some("admin"));
    assert!(p.ingress_references_countries() && !p.references_countries());
    // Egress rules are unchanged: ids, no peers/workloads.
    assert_eq!((p.rules[0].id, p.rules[0].peers, p.rules[0].workloads.is_none()), (1, false, true));
}

#[test]
fn default_ingress_defaults() {
    let v1 = parse_ok(&doc("  defaultAction: deny\n"));
    assert_eq!((v1.default_ingress, v1.enforces_ingress()), (Action::Allow, false));
    assert!(v1.workload_selector.is_none() && v1.ingress.is_empty());
    let empty = parse_ok(&doc("  defaultAction: deny\n  ingress: []\n"));
    assert_eq!((empty.default_ingress, empty.enforces_ingress()), (Action::Deny, true));
    let deny = parse_ok(&doc("  defaultAction: allow\n  defaultIngress: deny\n"));
    assert_eq!((deny.default_ingress, deny.enforces_ingress()), (Action::Deny, true));
    let allow = parse_ok(&doc(
        "  defaultAction: deny\n  defaultIngress: allow\n  ingress:\n    - {name: x, action: deny, from: {cidrs: [192.0.2.1]}}\n",
    ));
    assert_eq!((allow.default_ingress, allow.enforces_ingress()), (Action::Allow, true));
    // A v1 policy serializes without the new optional fields.
    let json = serde_json::to_value(&v1).unwrap();
    assert!(json.get("workload_selector").is_none());
    assert_eq!(json["default_ingress"], "allow");
}

#[test]
fn selector_errors_are_reported_at_once() {
    let long_key = "k".repeat(254);
    let src = doc(&format!(
        r#"  defaultAction: deny
  workloadSelector:
    matchLabels: {{"bad key": x, ok: "white space", {long_key}: y, v: {}}}
"#,
        "v".repeat(64)
    ));
    let diags = parse_err(&src);
    assert_diag(&diags, 8, 19, "invalid label key \"bad key\" in spec.workloadSelector: use 1-253 letters, digits and '.', '_', '/', '-'");
    assert_diag(&diags, 8, 37, "invalid value \"white space\" of label \"ok\" in spec.workloadSelector: use at most 63 letters, digits and '.', '_', '-'");
    assert_diag(&diags, 8, 52, "invalid label key \"kkkk");
    assert!(diags.iter().any(|d| d.message.contains("of label \"v\"")), "{diags:#?}");
    assert_eq!(diags.len(), 4, "{diags:#?}");

    let diags = parse_err(&doc("  defaultAction: deny\n  workloadSelector: {matchLabels: {}}\n"));
    assert_diag(&diags, 7, 35, "\"matchLabels\" in spec.workloadSelector must not be empty; omit workloadSelector for the node-default policy");
    let diags = parse_err(&doc("  defaultAction: deny\n  workloadSelector: {labels: {a: b}}\n"));
    assert_diag(
        &diags,
        7,
        22,
        "unknown field \"labels\" in spec.workloadSelector (expected one of: matchLabels)",
    );
    assert_diag(&diags, 7, 21, "missing required field \"matchLabels\" in spec.workloadSelector");
    let diags = parse_err(&doc("  defaultAction: deny\n  workloadSelector: {matchLabels: [a]}\n"));
    assert_diag(&diags, 7, 35, "expected a mapping of label keys to values for \"matchLabels\"");
}

#[test]
fn ingress_errors_are_reported_at_once() {
    let src = doc(r#"  defaultAction: deny
  defaultIngress: maybe
  ingress:
    - name: a
      action: allow
      from: {cidrs: [10.0.0.1/8], peers: true}
      encryption: required
    - name: a
      action: allow
      to: {cidrs: [192.0.2.0/24]}
    - name: c
      action: allow
      from: {workloads: {matchLabels: {}}, hosts: [x]}
      ports: [{port: 0}]
    - name: d
      action: allow
      from: {peers: false}
"#);
    let diags = parse_err(&src);
    assert_diag(&diags, 7, 19, "invalid defaultIngress \"maybe\" in spec (expected one of: allow, deny)");
    assert_diag(&diags, 11, 22, "has host bits set; did you mean \"10.0.0.0/8\"?");
    assert_diag(
        &diags,
        11,
        42,
        "\"from.peers: true\" in ingress rule \"a\" matches nothing: spec.peers lists no peer nodes",
    );
    assert_diag(&diags, 12, 19, "\"encryption\" is not allowed in ingress rule \"a\"");
    assert_diag(
        &diags,
        13,
        13,
        "duplicate ingress rule name \"a\" (also used by ingress rule 1 at line 9, column 13)",
    );
    assert_diag(&diags, 13, 7, "missing required field \"from\" in ingress rule \"a\"");
    assert_diag(
        &diags,
        15,
        7,
        "unknown field \"to\" in ingress rule \"a\" (expected one of: name, action, from, ports, encryption)",
    );
    assert_diag(&diags, 18, 39, "\"matchLabels\" in \"from.workloads\" of ingress rule \"c\" must not be empty; a workload selector needs at least one label");
    assert_diag(&diags, 18, 44, "unknown field \"hosts\" in \"from\" of ingress rule \"c\" (expected one of: cidrs, countries, countryGroups, peers, workloads)");
    assert_diag(&diags, 19, 22, "invalid port \"0\"");
    assert_diag(&diags, 22, 13, "\"from\" in ingress rule \"d\" matches no source");
    assert_eq!(diags.len(), 11, "{diags:#?}");
}

#[test]
fn egress_rules_reject_from_and_peers() {
    let src = doc(r#"  defaultAction: deny
  egress:
    - {name: a, action: allow, to: {peers: true}, from: {cidrs: [192.0.2.0/24]}}
"#);
    let diags = parse_err(&src);
    assert_diag(
        &diags,
        8,
        37,
        "unknown field \"peers\" in \"to\" of rule \"a\" (expected one of: cidrs, countries, countryGroups, fqdns)",
    );
    assert_diag(
        &diags,
        8,
        51,
        "unknown field \"from\" in rule \"a\" (expected one of: name, action, to, ports, encryption)",
    );
}
