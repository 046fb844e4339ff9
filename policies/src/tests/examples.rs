use std::path::Path;

use crate::{compile, load_policy_file, Action, Destination};

#[test]
fn every_example_parses_and_compiles() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if !matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
            continue;
        }
        let policy = load_policy_file(&path).unwrap_or_else(|e| panic!("{e}"));
        let compiled = compile(&policy).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!policy.rules.is_empty(), "{}", path.display());
        assert!(compiled.prefix_count() >= policy.rules.len(), "{}", path.display());
        count += 1;
    }
    assert!(count >= 2, "expected at least two example policies, found {count}");
}

#[test]
fn training_node_template_behaves_as_documented() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/training-node-default-deny.yaml");
    let policy = load_policy_file(&path).unwrap();
    let verdict = |to: &str| {
        let dest: Destination = to.parse().unwrap();
        let d = policy.evaluate(&dest);
        (d.action, d.rule.and_then(|id| policy.rule(id)).map(|r| r.name.clone()))
    };
    assert_eq!(verdict("198.51.100.20:443/tcp"), (Action::Allow, Some("checkpoint-store".into())));
    assert_eq!(verdict("198.51.100.20:22/tcp").0, Action::Deny);
    assert_eq!(verdict("192.0.2.53:53/udp"), (Action::Allow, Some("dns-ntp-resolvers".into())));
    assert_eq!(verdict("169.254.169.254:80/tcp"), (Action::Deny, Some("block-link-local-metadata".into())));
    assert_eq!(verdict("8.8.8.8:443/tcp"), (Action::Deny, None));
}
