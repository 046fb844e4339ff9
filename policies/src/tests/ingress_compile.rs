//! Compiling and evaluating ingress rules: sources and local ports in the egress tries, peers
//! and workloads expanded, and the kernel model agreeing with the reference evaluation.

use std::net::IpAddr;

use ipnet::IpNet;
use ringfence_common::{ACTION_ALLOW, ACTION_DENY, MODE_AUDIT, RULE_DEFAULT};

use super::geo_precedence::small_db;
use super::{doc, parse_ok};
use crate::{compile, compile_ingress, Action, CompileError, DecidedBy, Destination, Policy, Selector};

const SPEC: &str = "  defaultAction: allow
  peers: {cidrs: [192.0.2.0/28]}
  egress:
    - {name: out, action: deny, to: {cidrs: [10.0.0.0/8]}}
  ingress:
    - {name: ssh-admin, action: allow, from: {cidrs: [10.1.0.0/16]}, ports: [{port: 22, protocol: tcp}]}
    - {name: nccl-peers, action: allow, from: {peers: true}, ports: [{range: \"29500-29510\", protocol: tcp}]}
    - {name: job, action: allow, from: {workloads: {matchLabels: {slurm.job: \"7\"}}}}
    - {name: ghost, action: allow, from: {workloads: {matchLabels: {slurm.job: \"8\"}}}}
    - {name: no-cn, action: deny, from: {countries: [CN]}}
    - {name: eu-https, action: allow, from: {countryGroups: [eu]}, ports: [{port: 443, protocol: tcp}]}
";

/// Job 7 runs on 192.0.2.100 and 2001:db8::7 (given with host bits and IPv4-mapped); job 8 nowhere.
fn resolve(selector: &Selector) -> Vec<IpNet> {
    match selector.match_labels.get("slurm.job").map(String::as_str) {
        Some("7") => vec![
            "192.0.2.100/32".parse().unwrap(),
            "2001:db8::7/128".parse().unwrap(),
            "::ffff:192.0.2.101/128".parse().unwrap(),
        ],
        _ => Vec::new(),
    }
}

fn policy() -> Policy {
    parse_ok(&doc(SPEC))
}

/// The reference ingress verdict for `conn`, checked against the kernel model of the ingress
/// tables: (action, ingress rule id, decided by).
fn check(p: &Policy, conn: &str) -> (Action, Option<u32>, DecidedBy) {
    let geo = small_db();
    let compiled = compile_ingress(p, Some(&geo), &resolve).unwrap();
    let c: Destination = conn.parse().unwrap();
    let d = p.evaluate_ingress(&c, Some(&geo), &resolve);
    let (action, rule) = compiled.evaluate(c.addr, c.port.unwrap_or(0), c.protocol.to_kernel());
    let expected = if d.audited { Action::Deny } else { d.action };
    assert_eq!(
        action,
        if expected == Action::Allow { ACTION_ALLOW } else { ACTION_DENY },
        "{conn}: {:#?}",
        d.explanation
    );
    assert_eq!(rule, d.rule.unwrap_or(RULE_DEFAULT), "{conn}: {:#?}", d.explanation);
    assert!(!d.encryption_required, "{conn}");
    (d.action, d.rule, d.decided_by)
}

#[test]
fn cidr_peers_workloads_countries_and_default_deny() {
    let p = policy();
    assert_eq!(p.default_ingress, Action::Deny);
    // A CIDR allow on the local port 22 only.
    assert_eq!(check(&p, "10.1.2.3:22/tcp"), (Action::Allow, Some(1), DecidedBy::CidrRule));
    assert_eq!(check(&p, "10.1.2.3:23/tcp"), (Action::Deny, None, DecidedBy::Default));
    assert_eq!(check(&p, "10.2.0.1:22/tcp"), (Action::Deny, None, DecidedBy::Default));
    // from.peers: spec.peers.
    assert_eq!(check(&p, "192.0.2.5:29505/tcp"), (Action::Allow, Some(2), DecidedBy::CidrRule));
    assert_eq!(check(&p, "192.0.2.5:29505/udp"), (Action::Deny, None, DecidedBy::Default));
    assert_eq!(check(&p, "192.0.2.16:29505/tcp"), (Action::Deny, None, DecidedBy::Default));
    // from.workloads resolved by the callback; any port.
    assert_eq!(check(&p, "192.0.2.100:1234/udp"), (Action::Allow, Some(3), DecidedBy::CidrRule));
    assert_eq!(check(&p, "192.0.2.101:1234/tcp"), (Action::Allow, Some(3), DecidedBy::CidrRule));
    assert_eq!(check(&p, "[2001:db8::7]:80/tcp"), (Action::Allow, Some(3), DecidedBy::CidrRule));
    assert_eq!(check(&p, "[2001:db8::8]:80/tcp"), (Action::Deny, None, DecidedBy::Default));
    // Countries: CN denied, EU allowed on 443 only; FR 198.51.100.128/25, DE 198.51.100.0/25.
    assert_eq!(check(&p, "203.0.113.9:22/tcp"), (Action::Deny, Some(5), DecidedBy::CountryRule));
    assert_eq!(check(&p, "198.51.100.200:443/tcp"), (Action::Allow, Some(6), DecidedBy::CountryRule));
    assert_eq!(check(&p, "198.51.100.1:443/tcp"), (Action::Allow, Some(6), DecidedBy::CountryRule));
    assert_eq!(check(&p, "198.51.100.1:80/tcp"), (Action::Deny, None, DecidedBy::Default));
    // Egress is unchanged by the ingress rules.
    let egress = compile(&p, None).unwrap();
    assert_eq!(egress.evaluate("10.1.2.3".parse().unwrap(), 22, ringfence_common::PROTO_TCP).0, ACTION_DENY);
    assert_eq!(
        egress.evaluate("192.0.2.100".parse().unwrap(), 22, ringfence_common::PROTO_TCP).0,
        ACTION_ALLOW
    );
}

#[test]
fn unresolved_workloads_match_nothing() {
    let p = policy();
    let compiled = compile_ingress(&p, Some(&small_db()), &|_: &Selector| Vec::new()).unwrap();
    let synthetic = p.ingress_policy(&|_: &Selector| Vec::new());
    assert!(synthetic.rules[2].cidrs.is_empty() && synthetic.rules[3].cidrs.is_empty());
    assert_eq!(synthetic.rules.iter().map(|r| r.id).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5, 6]);
    // Every address/port the "job" rule would allow with addresses is now decided by the default:
    // an empty rule never widens to "any".
    for addr in ["192.0.2.100", "0.0.0.0", "2001:db8::7", "::"] {
        let a: IpAddr = addr.parse().unwrap();
        assert_eq!(
            compiled.evaluate(a, 1234, ringfence_common::PROTO_UDP),
            (ACTION_DENY, RULE_DEFAULT),
            "{addr}"
        );
    }
    // Only the cidr (10.1/16) and peers prefixes are in the tries: no default route.
    assert_eq!(compiled.v4.allow.iter().map(|(_, len, _)| *len).collect::<Vec<_>>(), vec![16, 28]);
    assert!(compiled.v6.allow.is_empty() && compiled.v4.deny.is_empty());
}

#[test]
fn defaults_mode_and_geo() {
    // No ingress settings: everything is accepted, nothing is in the tries.
    let v1 = parse_ok(&doc(
        "  defaultAction: deny\n  egress:\n    - {name: a, action: allow, to: {cidrs: [10.0.0.0/8]}}\n",
    ));
    assert!(!v1.enforces_ingress());
    let c = compile_ingress(&v1, None, &resolve).unwrap();
    assert_eq!((c.default_action, c.prefix_count()), (ACTION_ALLOW, 0));
    assert_eq!(check(&v1, "203.0.113.9:22/tcp"), (Action::Allow, None, DecidedBy::Default));
    // defaultIngress: allow with a deny rule, in audit mode.
    let audit = parse_ok(&doc("  mode: audit\n  defaultAction: deny\n  defaultIngress: allow\n  ingress:\n    - {name: no-ssh, action: deny, from: {cidrs: [\"0.0.0.0/0\"]}, ports: [{port: 22}]}\n"));
    let c = compile_ingress(&audit, None, &resolve).unwrap();
    assert_eq!((c.default_action, c.mode), (ACTION_ALLOW, MODE_AUDIT));
    assert_eq!(check(&audit, "198.51.100.7:22/tcp"), (Action::Allow, Some(1), DecidedBy::CidrRule));
    assert!(audit.evaluate_ingress(&"198.51.100.7:22/tcp".parse().unwrap(), None, &resolve).audited);
    assert_eq!(check(&audit, "198.51.100.7:80/tcp"), (Action::Allow, None, DecidedBy::Default));
    // Ingress country rules need a database; the egress side does not.
    let p = policy();
    assert!(!p.references_countries() && compile(&p, None).is_ok());
    assert_eq!(
        compile_ingress(&p, None, &resolve).unwrap_err(),
        CompileError::GeoDatabaseRequired {
            countries: p
                .ingress_policy(&resolve)
                .geo_countries()
                .iter()
                .map(|c| crate::countries::country_str(c).to_owned())
                .collect()
        }
    );
}

#[test]
fn explanation_names_sources_and_default_ingress() {
    let p = policy();
    let d = p.evaluate_ingress(&"192.0.2.200:9/udp".parse().unwrap(), Some(&small_db()), &resolve);
    let text = d.explanation.join("\n");
    assert!(text.starts_with("incoming connection from 192.0.2.200 to local port 9/udp: deciding by spec.ingress (6 rule(s), defaultIngress: deny)"), "{text}");
    assert!(text.contains("ingress rule 2 \"nccl-peers\": from.peers: 192.0.2.0/28"), "{text}");
    assert!(text.contains("ingress rule 3 \"job\": from.workloads {slurm.job=7} resolves to 192.0.2.100/32, 2001:db8::7/128, 192.0.2.101/32"), "{text}");
    assert!(
        text.contains(
            "ingress rule 4 \"ghost\": from.workloads {slurm.job=8} resolves to no address (matches nothing)"
        ),
        "{text}"
    );
    assert!(text.contains("defaultIngress (deny) applies"), "{text}");
    assert!(!text.contains("default action") && !text.contains("unknownCountry"), "{text}");
    assert_eq!((d.action, d.rule), (Action::Deny, None));
}
