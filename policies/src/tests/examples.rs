//! The example policies in `policies/examples/` parse, compile and behave as their README says.

use std::path::Path;

use ipnet::{Ipv4Net, Ipv6Net};

use crate::geo::GeoDb;
use crate::{
    compile, compile_ingress, load_policy_file, policy_for, selector_conflicts, Action, DecidedBy,
    Destination, Policy, Selector,
};

/// A small database covering a few documentation and example networks.
fn db() -> GeoDb {
    let v4: [(&str, [u8; 2]); 5] = [
        ("81.2.69.0/24", *b"GB"),
        ("89.160.20.0/24", *b"SE"),
        ("5.9.0.0/16", *b"DE"),
        ("203.0.113.0/24", *b"IR"),
        ("95.173.128.0/19", *b"RU"),
    ];
    let v4: Vec<(Ipv4Net, [u8; 2])> = v4.iter().map(|(n, c)| (n.parse().unwrap(), *c)).collect();
    let v6: Vec<(Ipv6Net, [u8; 2])> =
        vec![("2a01:4f8::/32".parse().unwrap(), *b"DE"), ("2001:db8:20::/48".parse().unwrap(), *b"US")];
    GeoDb::from_networks(v4, v6)
}

#[test]
fn every_example_parses_and_compiles() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let (mut count, mut with_countries) = (0, 0);
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if !matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
            continue;
        }
        let policy = load_policy_file(&path).unwrap_or_else(|e| panic!("{e}"));
        let geo = db();
        let compiled = compile(&policy, Some(&geo)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        compile_ingress(&policy, Some(&geo), &|_| Vec::new())
            .unwrap_or_else(|e| panic!("{}: ingress: {e}", path.display()));
        assert!(!policy.rules.is_empty(), "{}", path.display());
        if policy.references_countries() {
            with_countries += 1;
            assert!(compiled.geo_entries() > 0, "{}", path.display());
            assert!(compile(&policy, None).is_err(), "{}", path.display());
        } else {
            assert!(compiled.prefix_count() >= policy.rules.len(), "{}", path.display());
        }
        count += 1;
    }
    assert!(count >= 4, "expected at least four example policies, found {count}");
    assert!(with_countries >= 2, "expected at least two examples with countries");
}

fn verdicts(file: &str) -> impl Fn(&str) -> (Action, Option<String>, DecidedBy) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(file);
    let policy = load_policy_file(&path).unwrap();
    let geo = db();
    let compiled = compile(&policy, Some(&geo)).unwrap();
    move |to: &str| {
        let dest: Destination = to.parse().unwrap();
        let d = policy.evaluate_with_geo(&dest, Some(&geo));
        let (action, _) = compiled.evaluate(dest.addr, dest.port.unwrap_or(0), dest.protocol.to_kernel());
        assert_eq!(action == ringfence_common::ACTION_ALLOW, d.action == Action::Allow, "{to}");
        let must = compiled.must_encrypt(dest.addr, dest.port.unwrap_or(0), dest.protocol.to_kernel());
        assert_eq!(must, d.encryption_required, "{to}: {:?}", d.encryption_reason);
        (d.action, d.rule.and_then(|id| policy.rule(id)).map(|r| r.name.clone()), d.decided_by)
    }
}

#[test]
fn training_node_template_behaves_as_documented() {
    let verdict = verdicts("training-node-default-deny.yaml");
    let v = |to: &str| {
        let (action, rule, _) = verdict(to);
        (action, rule)
    };
    assert_eq!(v("198.51.100.20:443/tcp"), (Action::Allow, Some("checkpoint-store".into())));
    assert_eq!(v("198.51.100.20:22/tcp").0, Action::Deny);
    assert_eq!(v("192.0.2.53:53/udp"), (Action::Allow, Some("dns-ntp-resolvers".into())));
    assert_eq!(v("169.254.169.254:80/tcp"), (Action::Deny, Some("block-link-local-metadata".into())));
    assert_eq!(v("8.8.8.8:443/tcp"), (Action::Deny, None));
}

#[test]
fn eu_only_example_behaves_as_documented() {
    let v = verdicts("jurisdiction-eu-only.yaml");
    let eu = Some("eu-https".to_owned());
    assert_eq!(v("5.9.1.1:443/tcp"), (Action::Allow, eu.clone(), DecidedBy::CountryRule));
    assert_eq!(v("[2a01:4f8::1]:443/tcp"), (Action::Allow, eu.clone(), DecidedBy::CountryRule));
    assert_eq!(v("89.160.20.128:443/tcp"), (Action::Allow, eu, DecidedBy::CountryRule));
    assert_eq!(v("5.9.1.1:80/tcp"), (Action::Deny, None, DecidedBy::Default));
    assert_eq!(v("81.2.69.142:443/tcp"), (Action::Deny, None, DecidedBy::Default));
    assert_eq!(v("8.8.8.8:443/tcp"), (Action::Deny, None, DecidedBy::UnknownCountry));
    assert_eq!(v("10.1.2.3:22/tcp"), (Action::Allow, Some("internal-networks".into()), DecidedBy::CidrRule));
}

#[test]
fn export_control_example_behaves_as_documented() {
    let v = verdicts("export-control-deny.yaml");
    let deny = Some("deny-export-controlled".to_owned());
    assert_eq!(v("203.0.113.9:443/tcp"), (Action::Deny, deny.clone(), DecidedBy::CountryRule));
    assert_eq!(v("95.173.130.1:53/udp"), (Action::Deny, deny, DecidedBy::CountryRule));
    assert_eq!(v("203.0.113.10:443/tcp"), (Action::Allow, Some("vetted-mirror".into()), DecidedBy::CidrRule));
    assert_eq!(v("81.2.69.142:443/tcp"), (Action::Allow, None, DecidedBy::Default));
    assert_eq!(v("10.0.0.1:443/tcp"), (Action::Allow, None, DecidedBy::UnknownCountry));
}

#[test]
fn encrypted_mesh_example_behaves_as_documented() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join("encrypted-mesh.yaml");
    let policy = load_policy_file(&path).unwrap();
    assert_eq!(policy.cross_border.as_deref(), Some("eu-west"));
    let v = verdicts("encrypted-mesh.yaml");
    let geo = db();
    let reason = |to: &str| policy.evaluate_with_geo(&to.parse().unwrap(), Some(&geo)).encryption_reason;
    assert_eq!(v("198.51.100.7:443/tcp").1.as_deref(), Some("training-peers"));
    assert_eq!(reason("198.51.100.7:443/tcp").as_deref(), Some("peer node 198.51.100.0/26"));
    assert_eq!(reason("[2001:db8:10::7]:51820/udp").as_deref(), Some("peer node 2001:db8:10::/48"));
    assert_eq!(v("203.0.113.9:443/tcp").1.as_deref(), Some("storage"));
    assert_eq!(reason("203.0.113.9:443/tcp").as_deref(), Some("rule \"storage\" requires encryption"));
    assert_eq!(v("192.0.2.53:53/udp").1.as_deref(), Some("site-dns"));
    assert_eq!(reason("192.0.2.53:53/udp"), None);
    assert_eq!(v("5.9.1.1:443/tcp"), (Action::Allow, Some("eu-https".into()), DecidedBy::CountryRule));
    assert_eq!(reason("5.9.1.1:443/tcp"), None);
    assert_eq!(reason("[2a01:4f8::1]:443/tcp"), None);
    assert_eq!(v("81.2.69.142:443/tcp").0, Action::Deny);
    assert_eq!(reason("81.2.69.142:443/tcp").as_deref(), Some("outside home region eu-west"));
    assert_eq!(reason("8.8.8.8:443/tcp").as_deref(), Some("outside home region eu-west"));
}

#[test]
fn exfiltration_guard_example_behaves_as_documented() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join("exfiltration-guard.yaml");
    let policy = load_policy_file(&path).unwrap();
    let x = policy.exfiltration.as_ref().expect("spec.exfiltration");
    assert_eq!(x.bulk, Some(crate::Bulk { bytes: 2 << 30, window_secs: 600 }));
    assert_eq!((x.action, x.block_for_secs), (crate::ExfilAction::Block, 3_600));
    let c = x.checkpoints.as_ref().unwrap();
    assert_eq!(c.paths, ["/data/checkpoints", "/scratch/ckpt"]);
    assert_eq!(c.tolerance_bp, 200);
    assert!(c.matches_name("model-00001-of-00004.safetensors") && !c.matches_name("model.gguf"));
    let approves = |a: &str| x.approved.approves(a.parse().unwrap(), None, &policy.peers);
    assert!(approves("198.51.100.20") && approves("192.0.2.7") && approves("2001:db8:10::1"));
    assert!(!approves("203.0.113.9") && !approves("2001:db8:20::1"));
    assert!(!policy.exfiltration_needs_geo() && !policy.references_countries());
    // The exfiltration section does not change verdicts.
    let v = verdicts("exfiltration-guard.yaml");
    assert_eq!(v("203.0.113.9:443/tcp").1.as_deref(), Some("package-mirror"));
    assert_eq!(v("198.51.100.20:443/tcp").1.as_deref(), Some("checkpoint-store"));
    assert_eq!(v("8.8.8.8:443/tcp").0, Action::Deny);
}

fn example(file: &str) -> Policy {
    load_policy_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join("examples").join(file)).unwrap()
}

#[test]
fn per_job_examples_select_disjoint_workloads() {
    let (eu, us, node) =
        (example("job-eu-resident.yaml"), example("job-us-resident.yaml"), example("node-default.yaml"));
    let named = [("job-eu-resident.yaml", &eu), ("job-us-resident.yaml", &us), ("node-default.yaml", &node)];
    assert_eq!(selector_conflicts(&named), vec![]);
    let policies = [eu.clone(), us.clone(), node.clone()];
    let labels = |profile: &str| {
        [("ringfence.dev/profile", profile), ("slurm.job", "4711")]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    assert_eq!(
        policy_for(&policies, &labels("eu-resident")).unwrap().map(|p| p.name.as_str()),
        Some("job-eu-resident")
    );
    assert_eq!(
        policy_for(&policies, &labels("us-resident")).unwrap().map(|p| p.name.as_str()),
        Some("job-us-resident")
    );
    assert_eq!(policy_for(&policies, &labels("cn-resident")).unwrap(), None);
    assert!(node.workload_selector.is_none() && eu.enforces_ingress() && node.enforces_ingress());
    // The examples without ingress settings still accept every incoming connection.
    assert!(!example("jurisdiction-eu-only.yaml").enforces_ingress());
}

#[test]
fn per_job_examples_behave_as_documented() {
    let v = verdicts("job-eu-resident.yaml");
    assert_eq!(v("5.9.1.1:443/tcp"), (Action::Allow, Some("eu-https".into()), DecidedBy::CountryRule));
    assert_eq!(v("[2001:db8:20::1]:443/tcp").0, Action::Deny);
    assert_eq!(v("198.51.100.7:29500/tcp").1.as_deref(), Some("training-peers"));
    let v = verdicts("job-us-resident.yaml");
    assert_eq!(
        v("[2001:db8:20::1]:443/tcp"),
        (Action::Allow, Some("us-https".into()), DecidedBy::CountryRule)
    );
    assert_eq!(v("5.9.1.1:443/tcp").0, Action::Deny);
    // Ingress: the rendezvous/NCCL ports from EU-resident jobs (resolved by the agent) and peers.
    let eu = example("job-eu-resident.yaml");
    let geo = db();
    let jobs = |s: &Selector| match s.match_labels.get("ringfence.dev/profile").map(String::as_str) {
        Some("eu-resident") => vec!["192.0.2.10/32".parse().unwrap()],
        _ => vec!["192.0.2.20/32".parse().unwrap()],
    };
    let compiled = compile_ingress(&eu, Some(&geo), &jobs).unwrap();
    let ingress = |conn: &str| {
        let c: Destination = conn.parse().unwrap();
        let d = eu.evaluate_ingress(&c, Some(&geo), &jobs);
        let (action, _) = compiled.evaluate(c.addr, c.port.unwrap_or(0), c.protocol.to_kernel());
        assert_eq!(action == ringfence_common::ACTION_ALLOW, d.action == Action::Allow, "{conn}");
        (d.action, d.rule.and_then(|id| eu.ingress_rule(id)).map(|r| r.name.clone()))
    };
    let rule = Some("rendezvous-nccl-from-eu-jobs".to_owned());
    assert_eq!(ingress("192.0.2.10:29500/tcp"), (Action::Allow, rule.clone()));
    assert_eq!(ingress("192.0.2.10:50050/tcp"), (Action::Allow, rule.clone()));
    assert_eq!(ingress("198.51.100.7:29500/tcp"), (Action::Allow, rule));
    assert_eq!(ingress("192.0.2.10:22/tcp"), (Action::Deny, None));
    assert_eq!(ingress("192.0.2.20:29500/tcp"), (Action::Deny, None), "a US-resident job");
    assert_eq!(ingress("5.9.1.1:29500/tcp"), (Action::Deny, None));
    let node = example("node-default.yaml");
    let d = node.evaluate_ingress(&"203.0.113.5:22/tcp".parse().unwrap(), None, &jobs);
    assert_eq!((d.action, d.rule), (Action::Allow, Some(1)));
    let d = node.evaluate_ingress(&"203.0.113.50:22/tcp".parse().unwrap(), None, &jobs);
    assert_eq!((d.action, d.rule), (Action::Deny, None));
}
