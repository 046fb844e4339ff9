//! Compilation of CIDR rules: tries, shared match lists, the kernel's limits, default routes and
//! a policy of 400,000 prefixes.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::IpNet;
use ringfence_common::{
    MatchItem, PrefixEntry, ACTION_ALLOW, ACTION_DENY, MAX_DEPTH, MAX_LISTS, MODE_ENFORCE, PROTO_ANY,
    PROTO_TCP, PROTO_UDP, RULE_DEFAULT,
};

use crate::{compile, Action, CompileError, Mode, Policy, PortMatch, Protocol, Rule};

pub(crate) fn rule(id: u32, action: Action, cidrs: &[&str], ports: &[(u16, u16, Protocol)]) -> Rule {
    Rule {
        id,
        name: format!("r{id}"),
        action,
        cidrs: cidrs.iter().map(|c| c.parse().unwrap()).collect(),
        countries: Vec::new(),
        country_groups: Vec::new(),
        fqdns: Vec::new(),
        ports: ports.iter().map(|&(lo, hi, protocol)| PortMatch { lo, hi, protocol }).collect(),
        encryption_required: false,
        peers: false,
        workloads: None,
    }
}

pub(crate) fn policy(default_action: Action, rules: Vec<Rule>) -> Policy {
    Policy {
        name: "t".into(),
        mode: Mode::Enforce,
        default_action,
        rules,
        unknown_country: None,
        peers: Vec::new(),
        regions: Default::default(),
        cross_border: None,
        exfiltration: None,
        raw_sockets: Default::default(),
        workload_selector: None,
        ingress: Vec::new(),
        default_ingress: Action::Allow,
        dns: Default::default(),
    }
}

fn v4(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn tries_lists_and_items() {
    let p = policy(
        Action::Deny,
        vec![
            rule(
                1,
                Action::Allow,
                &["198.51.100.0/24", "2001:db8::/32"],
                &[(443, 443, Protocol::Tcp), (53, 53, Protocol::Udp)],
            ),
            rule(2, Action::Deny, &["198.51.100.0/24"], &[]),
            rule(3, Action::Allow, &["198.51.100.0/24", "198.51.100.0/24"], &[(1, 100, Protocol::Any)]),
        ],
    );
    let c = compile(&p, None).unwrap();
    assert_eq!((c.default_action, c.mode), (ACTION_DENY, MODE_ENFORCE));
    assert_eq!(c.v4.allow.len(), 1);
    let (bytes, len, entry) = c.v4.allow[0];
    assert_eq!((bytes, len), ([198, 51, 100, 0], 24));
    assert_eq!(entry.prefix_len, 24);
    let list = c.lists[entry.list_id as usize];
    let items = &list.items[..list.len as usize];
    let item = |port_lo, port_hi, proto, rule_id| MatchItem { port_lo, port_hi, proto, rule_id };
    assert_eq!(
        items,
        &[item(443, 443, PROTO_TCP, 1), item(53, 53, PROTO_UDP, 1), item(1, 100, PROTO_ANY, 3)]
    );
    let (_, _, deny) = c.v4.deny[0];
    let list = c.lists[deny.list_id as usize];
    assert_eq!(&list.items[..list.len as usize], &[item(0, 65535, PROTO_ANY, 2)]);
    assert_eq!(c.v6.allow.len(), 1);
    let (bytes6, len6, entry6) = c.v6.allow[0];
    assert_eq!(len6, 32);
    assert_eq!(&bytes6[..4], &[0x20, 0x01, 0x0d, 0xb8]);
    assert!(bytes6[4..].iter().all(|b| *b == 0));
    let list6 = c.lists[entry6.list_id as usize];
    assert_eq!(
        &list6.items[..list6.len as usize],
        &[item(443, 443, PROTO_TCP, 1), item(53, 53, PROTO_UDP, 1)]
    );
    assert!(c.v6.deny.is_empty());
    assert_eq!(c.lists.len(), 3);
    assert_eq!(c.prefix_count(), 3);
    assert_eq!(c.evaluate(v4("198.51.100.1"), 443, PROTO_TCP), (ACTION_DENY, 2));
    assert_eq!(c.evaluate(v4("203.0.113.1"), 443, PROTO_TCP), (ACTION_DENY, RULE_DEFAULT));
    assert_eq!(c.evaluate(v4("2001:db8::5"), 53, PROTO_UDP), (ACTION_ALLOW, 1));
    assert_eq!(c.evaluate(v4("2001:db8::5"), 53, PROTO_TCP), (ACTION_DENY, RULE_DEFAULT));
}

#[test]
fn identical_lists_are_shared_by_many_prefixes() {
    let cidrs: Vec<String> =
        (0..10_000u32).map(|i| format!("{}/32", Ipv4Addr::from(0x0A00_0000 + i * 7))).collect();
    let refs: Vec<&str> = cidrs.iter().map(String::as_str).collect();
    let r6 = rule(2, Action::Allow, &["2001:db8::/48"], &[(443, 443, Protocol::Tcp)]);
    let p = policy(Action::Deny, vec![rule(1, Action::Allow, &refs, &[(443, 443, Protocol::Tcp)]), r6]);
    let c = compile(&p, None).unwrap();
    assert_eq!(c.v4.allow.len(), 10_000);
    assert_eq!(c.lists.len(), 2, "one list per distinct item set");
    assert!(c.v4.allow.windows(2).all(|w| w[0].0 < w[1].0), "entries sorted by address");
    assert_eq!(c.evaluate(v4("10.0.0.7"), 443, PROTO_TCP), (ACTION_ALLOW, 1));
    assert_eq!(c.evaluate(v4("10.0.0.8"), 443, PROTO_TCP), (ACTION_DENY, RULE_DEFAULT));
}

#[test]
fn too_many_items_on_one_prefix_is_an_error() {
    let ports: Vec<(u16, u16, Protocol)> = (1..=9).map(|p| (p, p, Protocol::Tcp)).collect();
    let p = policy(
        Action::Deny,
        vec![
            rule(1, Action::Allow, &["10.0.0.0/8"], &ports),
            rule(2, Action::Allow, &["10.0.0.0/8"], &ports),
        ],
    );
    let err = compile(&p, None).unwrap_err();
    assert!(matches!(err, CompileError::TooManyItems { items: 18, .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("10.0.0.0/8") && text.contains("1 \"r1\", 2 \"r2\""), "{text}");
    // The same rules on different actions fit.
    let p = policy(
        Action::Deny,
        vec![rule(1, Action::Allow, &["10.0.0.0/8"], &ports), rule(2, Action::Deny, &["10.0.0.0/8"], &ports)],
    );
    compile(&p, None).unwrap();
}

fn nested(count: u32) -> Vec<String> {
    (0..count).map(|len| format!("10.0.0.0/{}", 8 + len)).collect()
}

#[test]
fn nesting_deeper_than_the_kernel_walk_is_an_error() {
    let cidrs = nested(MAX_DEPTH + 1);
    let refs: Vec<&str> = cidrs.iter().map(String::as_str).collect();
    let err = compile(&policy(Action::Allow, vec![rule(1, Action::Deny, &refs, &[])]), None).unwrap_err();
    assert!(matches!(err, CompileError::TooDeep { depth: 17, action: Action::Deny, .. }), "{err:?}");
    assert!(err.to_string().contains("10.0.0.0/8 > 10.0.0.0/9"), "{err}");

    // Exactly MAX_DEPTH nested prefixes work; only the outermost matches the port.
    let cidrs = nested(MAX_DEPTH);
    let mut rules: Vec<Rule> = cidrs
        .iter()
        .enumerate()
        .map(|(i, c)| rule(i as u32 + 1, Action::Allow, &[c], &[(i as u16 + 1, i as u16 + 1, Protocol::Tcp)]))
        .collect();
    rules.push(rule(17, Action::Allow, &["192.0.2.0/24"], &[]));
    let c = compile(&policy(Action::Deny, rules), None).unwrap();
    assert_eq!(c.evaluate(v4("10.0.0.1"), 1, PROTO_TCP), (ACTION_ALLOW, 1));
    assert_eq!(c.evaluate(v4("10.0.0.1"), 16, PROTO_TCP), (ACTION_ALLOW, 16));
    assert_eq!(c.evaluate(v4("10.0.0.1"), 17, PROTO_TCP), (ACTION_DENY, RULE_DEFAULT));
}

#[test]
fn more_lists_than_the_kernel_array_is_an_error() {
    let rules: Vec<Rule> = (1..=MAX_LISTS + 1)
        .map(|id| {
            let net = format!("{}/32", Ipv4Addr::from(0x0A00_0000 + id));
            let port = u16::try_from(id).unwrap();
            rule(id, Action::Allow, &[&net], &[(port, port, Protocol::Tcp)])
        })
        .collect();
    let err = compile(&policy(Action::Deny, rules), None).unwrap_err();
    assert_eq!(err, CompileError::TooManyLists { lists: MAX_LISTS as usize + 1, max: MAX_LISTS as usize });
}

#[test]
fn default_route_prefixes_and_ipv4_mapped_lookup() {
    let p = policy(
        Action::Deny,
        vec![
            rule(1, Action::Allow, &["0.0.0.0/0"], &[(443, 443, Protocol::Tcp)]),
            rule(2, Action::Allow, &["::/0"], &[]),
        ],
    );
    let c = compile(&p, None).unwrap();
    assert_eq!(c.v4.allow[0].2, PrefixEntry { prefix_len: 0, list_id: 0 });
    assert_eq!(c.evaluate(v4("::ffff:192.0.2.1"), 443, PROTO_TCP), (ACTION_ALLOW, 1));
    assert_eq!(c.evaluate(v4("::ffff:192.0.2.1"), 80, PROTO_TCP), (ACTION_DENY, RULE_DEFAULT));
    assert_eq!(c.evaluate(v4("2001:db8::1"), 80, PROTO_TCP), (ACTION_ALLOW, 2));
}

#[test]
fn four_hundred_thousand_prefixes() {
    let mut nets: Vec<IpNet> = (0..400_000u32)
        .map(|i| IpNet::new(IpAddr::V4(Ipv4Addr::from(0x2000_0000 + i * 4)), 30).unwrap())
        .collect();
    nets.push("32.0.0.0/8".parse().unwrap());
    let allow = Rule {
        id: 1,
        name: "feed".into(),
        action: Action::Allow,
        cidrs: nets,
        countries: Vec::new(),
        country_groups: Vec::new(),
        fqdns: Vec::new(),
        ports: vec![PortMatch { lo: 443, hi: 443, protocol: Protocol::Tcp }],
        encryption_required: false,
        peers: false,
        workloads: None,
    };
    let deny = rule(2, Action::Deny, &["32.0.0.0/16"], &[(22, 22, Protocol::Tcp)]);
    let p = policy(Action::Deny, vec![allow, deny]);
    let c = compile(&p, None).unwrap();
    assert_eq!(c.v4.allow.len(), 400_001);
    assert_eq!(c.lists.len(), 2);
    for i in (0..400_000u32).step_by(997) {
        let addr = IpAddr::V4(Ipv4Addr::from(0x2000_0000 + i * 4 + 1));
        assert_eq!(c.evaluate(addr, 443, PROTO_TCP), (ACTION_ALLOW, 1));
        let expected_22 = if i * 4 < 0x1_0000 { (ACTION_DENY, 2) } else { (ACTION_DENY, RULE_DEFAULT) };
        assert_eq!(c.evaluate(addr, 22, PROTO_TCP), expected_22);
    }
}
