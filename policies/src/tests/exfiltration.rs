//! `spec.exfiltration`: parsing into the model, defaults, and the model's helpers (`approves`,
//! `matches_name`, `exfiltration_needs_geo`). Validation errors: `exfil_errors`.

use std::net::IpAddr;

use ipnet::IpNet;

use super::{doc, parse_ok};
use crate::countries::CountryCode;
use crate::groups::shipped_groups;
use crate::{ApprovedSinks, Bulk, Checkpoints, ExfilAction, Exfiltration};

fn nets(v: &[&str]) -> Vec<IpNet> {
    v.iter().map(|n| n.parse().unwrap()).collect()
}

fn addr(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const FULL: &str = "  defaultAction: deny
  peers: { cidrs: [192.0.2.0/26] }
  countryGroups: { nordics: [SE, NO] }
  exfiltration:
    approvedSinks:
      cidrs: [203.0.113.0/24, \"::ffff:198.51.100.0/120\", 203.0.113.0/24, \"2001:db8::/32\"]
      countries: [FR, DE]
      countryGroups: [nordics, eu]
      peers: true
    bulk: { bytes: 2GiB, window: 10m }
    checkpoints: { paths: [/data/ckpt/, /mnt/weights, /data/ckpt], patterns: [\"*.safetensors\", \"step-?.pt\"], tolerance: 0.5% }
    action: block
    blockFor: 2h30m
  egress:
    - { name: peers, action: allow, to: { cidrs: [192.0.2.0/26] } }
";

#[test]
fn full_section_parses_into_the_model() {
    let p = parse_ok(&doc(FULL));
    let mut countries: Vec<CountryCode> = vec![*b"DE", *b"FR", *b"SE", *b"NO"];
    countries.extend(&shipped_groups().iter().find(|g| g.name == "eu").unwrap().countries);
    countries.sort_unstable();
    countries.dedup();
    let expected = Exfiltration {
        approved: ApprovedSinks {
            cidrs: nets(&["198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32"]),
            countries,
            peers: true,
            fqdns: Vec::new(),
        },
        bulk: Some(Bulk { bytes: 2 << 30, window_secs: 600 }),
        checkpoints: Some(Checkpoints {
            paths: vec!["/data/ckpt".into(), "/mnt/weights".into()],
            patterns: vec!["*.safetensors".into(), "step-?.pt".into()],
            tolerance_bp: 50,
        }),
        action: ExfilAction::Block,
        block_for_secs: 9_000,
        budgets: None,
        rate_limit: None,
    };
    assert_eq!(p.exfiltration.as_ref(), Some(&expected));
    let x = p.exfiltration.as_ref().unwrap();
    assert_eq!(x.approved.countries.len(), 28);
    assert_eq!(x.block_for(), std::time::Duration::from_secs(9_000));
    assert_eq!(x.bulk.unwrap().window(), std::time::Duration::from_secs(600));
    assert_eq!(x.checkpoints.as_ref().unwrap().tolerance(), 0.005);
    // Approved countries need the database in the agent, not in the kernel tries.
    assert!(p.exfiltration_needs_geo());
    assert!(!p.references_countries());
    assert!(p.geo_countries().is_empty());
    let json = serde_json::to_value(&p).unwrap();
    let x = &json["exfiltration"];
    assert_eq!(x["action"], "block");
    assert_eq!(x["approved"]["countries"][0], "AT");
    assert_eq!(x["approved"]["cidrs"][0], "198.51.100.0/24");
    assert_eq!(x["bulk"]["bytes"], 2u64 << 30);
    assert_eq!(x["checkpoints"]["tolerance_bp"], 50);
    let summary = p.exfiltration.as_ref().unwrap().to_string();
    assert!(summary.starts_with("bulk: more than 2GiB to one destination within 10m; checkpoints: *.safetensors, step-?.pt in /data/ckpt, /mnt/weights (tolerance 0.5%); approved: 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32, AT, "), "{summary}");
    assert!(summary.ends_with(", SK, peers; action: block for 2h30m"), "{summary}");
}

#[test]
fn defaults() {
    let p =
        parse_ok(&doc("  defaultAction: allow\n  exfiltration: { bulk: { bytes: 1048576, window: 30s } }\n"));
    let x = p.exfiltration.unwrap();
    assert_eq!(x.approved, ApprovedSinks::default());
    assert!(x.approved.is_empty());
    assert_eq!(x.bulk, Some(Bulk { bytes: 1 << 20, window_secs: 30 }));
    assert_eq!((&x.checkpoints, x.action), (&None, ExfilAction::Alert));
    assert_eq!(x.block_for_secs, Exfiltration::DEFAULT_BLOCK_FOR_SECS);
    assert_eq!(x.block_for_secs, 3_600);
    assert_eq!(
        x.to_string(),
        "bulk: more than 1MiB to one destination within 30s; approved: none; action: alert"
    );

    let p = parse_ok(&doc(
        "  defaultAction: allow\n  exfiltration:\n    checkpoints:\n      paths: [/]\n    approvedSinks: {}\n    action: block\n",
    ));
    let x = p.exfiltration.as_ref().unwrap();
    let c = x.checkpoints.as_ref().unwrap();
    assert_eq!(c.paths, vec!["/".to_owned()]);
    assert_eq!(c.patterns, ["*.safetensors", "*.pt", "*.pth", "*.ckpt", "*.bin", "*.gguf"]);
    assert_eq!(c.tolerance_bp, Checkpoints::DEFAULT_TOLERANCE_BP);
    assert_eq!(c.tolerance_bp, 200);
    assert_eq!((x.bulk, x.action, x.block_for_secs), (None, ExfilAction::Block, 3_600));
    assert!(!p.exfiltration_needs_geo());
    assert_eq!((ExfilAction::Block.as_str(), ExfilAction::Alert.to_string().as_str()), ("block", "alert"));

    // Without the section: none, and no geo needed.
    let p = parse_ok(&doc("  defaultAction: allow\n"));
    assert_eq!(p.exfiltration, None);
    assert!(!p.exfiltration_needs_geo());
}

#[test]
fn approves() {
    let sinks = ApprovedSinks {
        cidrs: nets(&["198.51.100.0/24", "2001:db8::/32"]),
        countries: vec![*b"DE"],
        peers: false,
        fqdns: Vec::new(),
    };
    let peers = nets(&["192.0.2.0/26", "2001:db8:10::/48"]);
    assert!(sinks.approves(addr("198.51.100.7"), None, &peers));
    assert!(sinks.approves(addr("::ffff:198.51.100.7"), None, &peers));
    assert!(sinks.approves(addr("2001:db8::1"), Some(*b"US"), &peers));
    assert!(sinks.approves(addr("203.0.113.1"), Some(*b"DE"), &peers));
    assert!(!sinks.approves(addr("203.0.113.1"), Some(*b"FR"), &peers));
    assert!(!sinks.approves(addr("203.0.113.1"), None, &peers));
    // An IPv4-mapped address is IPv4: the IPv6 CIDR does not contain it.
    assert!(!sinks.approves(addr("::ffff:203.0.113.1"), None, &peers));
    // Peers only with `peers: true`.
    assert!(!sinks.approves(addr("192.0.2.9"), None, &peers));
    let with_peers = ApprovedSinks { peers: true, ..sinks.clone() };
    assert!(with_peers.approves(addr("192.0.2.9"), None, &peers));
    assert!(with_peers.approves(addr("::ffff:192.0.2.9"), None, &peers));
    assert!(with_peers.approves(addr("2001:db8:10::5"), None, &peers));
    assert!(with_peers.approves(addr("192.0.2.9"), None, &nets(&["::ffff:192.0.2.0/120"])));
    assert!(!with_peers.approves(addr("192.0.2.200"), None, &peers));
    assert!(!with_peers.approves(addr("192.0.2.9"), None, &[]));
    assert!(!ApprovedSinks::default().approves(addr("198.51.100.7"), Some(*b"DE"), &peers));
    // From a parsed policy, with the policy's peers.
    let p = parse_ok(&doc(FULL));
    let approved = &p.exfiltration.as_ref().unwrap().approved;
    assert!(approved.approves(addr("192.0.2.1"), None, &p.peers));
    assert!(approved.approves(addr("198.51.100.1"), None, &p.peers));
    assert!(approved.approves(addr("8.8.8.8"), Some(*b"NO"), &p.peers));
    assert!(!approved.approves(addr("8.8.8.8"), Some(*b"US"), &p.peers));
}

#[test]
fn matches_name() {
    let defaults = Checkpoints {
        paths: vec!["/ckpt".into()],
        patterns: Checkpoints::DEFAULT_PATTERNS.iter().map(|p| (*p).to_owned()).collect(),
        tolerance_bp: 200,
    };
    for yes in ["model.safetensors", "model-00001-of-00004.safetensors", "step-100.pt", "x.pth", "a.ckpt"] {
        assert!(defaults.matches_name(yes), "{yes}");
    }
    for yes in ["pytorch_model.bin", "llama.gguf", ".pt"] {
        assert!(defaults.matches_name(yes), "{yes}");
    }
    for no in ["model.safetensors.tmp", "MODEL.PT", "notes.txt", "pt", "model.pt.partial", ""] {
        assert!(!defaults.matches_name(no), "{no}");
    }
    let custom = Checkpoints { patterns: vec!["step-?.ckpt".into(), "weights-*-final*".into()], ..defaults };
    assert!(custom.matches_name("step-1.ckpt"));
    assert!(!custom.matches_name("step-10.ckpt"));
    assert!(!custom.matches_name("step-.ckpt"));
    assert!(custom.matches_name("weights-7b-final"));
    assert!(custom.matches_name("weights--final.v2"));
    assert!(!custom.matches_name("weights-final"));
    let none = Checkpoints { patterns: Vec::new(), ..custom };
    assert!(!none.matches_name("model.pt"));
}
