//! Which policy enforces a workload, and overlapping workload selectors.

use std::collections::BTreeMap;

use super::{doc, parse_ok};
use crate::{policy_for, selector_conflicts, Policy};

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// A policy named `name` selecting `selector` (a flow mapping, or `None` for a node default).
fn policy(name: &str, selector: Option<&str>) -> Policy {
    let mut p = parse_ok(&doc(&match selector {
        Some(s) => format!("  defaultAction: deny\n  workloadSelector: {{matchLabels: {s}}}\n"),
        None => "  defaultAction: deny\n".to_owned(),
    }));
    p.name = name.to_owned();
    p
}

#[test]
fn selector_matches_and_overlaps() {
    let eu = policy("eu", Some("{profile: eu, site: a}"));
    let s = eu.workload_selector.as_ref().unwrap();
    assert!(s.matches(&labels(&[("profile", "eu"), ("site", "a"), ("slurm.job", "7")])));
    assert!(!s.matches(&labels(&[("profile", "eu")])), "every selector label is needed");
    assert!(!s.matches(&labels(&[("profile", "us"), ("site", "a")])));
    let other = |sel: &str| policy("x", Some(sel)).workload_selector.unwrap();
    assert!(s.overlaps(&other("{profile: eu}")), "a subset overlaps");
    assert!(s.overlaps(&other("{team: ml}")), "disjoint keys overlap");
    assert!(!s.overlaps(&other("{profile: us, team: ml}")), "a shared key with another value");
    assert_eq!(
        s.example_both(&other("{team: ml}")),
        Some(labels(&[("profile", "eu"), ("site", "a"), ("team", "ml")]))
    );
    assert_eq!(s.example_both(&other("{site: b}")), None);
}

#[test]
fn conflicts_name_both_policies_and_an_example() {
    let eu = policy("eu", Some("{profile: eu}"));
    let us = policy("us", Some("{profile: us}"));
    let team = policy("ml-team", Some("{team: ml}"));
    let default = policy("node", None);
    let default2 = policy("node-two", None);
    assert!(selector_conflicts(&[("eu.yaml", &eu), ("us.yaml", &us), ("node.yaml", &default)]).is_empty());
    let c = selector_conflicts(&[
        ("eu.yaml", &eu),
        ("us.yaml", &us),
        ("team.yaml", &team),
        ("node.yaml", &default),
        ("node2.yaml", &default2),
    ]);
    let text: Vec<String> = c.iter().map(ToString::to_string).collect();
    assert_eq!(text.len(), 3, "{text:#?}");
    assert_eq!(
        text[0],
        "policy \"eu\" (eu.yaml) and policy \"ml-team\" (team.yaml) both select workloads labelled {profile=eu, team=ml}: make their workloadSelectors differ in the value of a common label key"
    );
    assert!(text[1].starts_with("policy \"us\" (us.yaml) and policy \"ml-team\" (team.yaml) both select workloads labelled {profile=us, team=ml}"));
    assert!(text[2].starts_with(
        "policy \"node\" (node.yaml) and policy \"node-two\" (node2.yaml) are both node-default policies"
    ));
    assert!(c[2].both_default && c[2].example.is_empty());
    assert_eq!(c[0].example, labels(&[("profile", "eu"), ("team", "ml")]));
}

#[test]
fn policy_for_picks_the_matching_policy() {
    let policies = vec![
        policy("node", None),
        policy("eu", Some("{ringfence.dev/profile: eu-resident}")),
        policy("us", Some("{ringfence.dev/profile: us-resident}")),
        policy("ml-team", Some("{team: ml}")),
    ];
    let eu_job = labels(&[("ringfence.dev/profile", "eu-resident"), ("slurm.job", "42")]);
    assert_eq!(policy_for(&policies, &eu_job).unwrap().map(|p| p.name.as_str()), Some("eu"));
    let other = labels(&[("ringfence.dev/profile", "cn-resident")]);
    assert_eq!(policy_for(&policies, &other).unwrap(), None, "the node default applies");
    assert_eq!(policy_for(&policies, &BTreeMap::new()).unwrap(), None);
    let both = labels(&[("ringfence.dev/profile", "us-resident"), ("team", "ml")]);
    let err = policy_for(&policies, &both).unwrap_err();
    assert_eq!((err.first.as_str(), err.second.as_str()), ("us", "ml-team"));
    assert_eq!(
        err.to_string(),
        "policies \"us\" and \"ml-team\" both select the workload labelled {ringfence.dev/profile=us-resident, team=ml}; their workloadSelectors overlap (see selector_conflicts)"
    );
}
