//! The monitor with real policies: approved sinks by CIDR, country and peer; alert records
//! (process, country, action under enforce and audit); rules kept across an unrelated reload.
use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use ringfence_policy::{geo::GeoDb, parse_policy, CountryCode};

use super::ExfilMonitor;
use crate::exfil::{AlertKind, FlowId, FlowSample, Process};

const MB: u64 = 1_000_000;

fn policy(mode: &str, exfil: &str) -> ringfence_policy::Policy {
    let doc = format!(
        "apiVersion: ringfence.dev/v1\nkind: EgressPolicy\nmetadata: {{ name: guard }}\nspec:\n  mode: {mode}\n  defaultAction: allow\n  peers: {{ cidrs: [192.0.2.50/32] }}\n  exfiltration:\n{exfil}"
    );
    parse_policy(&doc).unwrap_or_else(|e| panic!("policy: {e:?}"))
}

fn geo() -> GeoDb {
    let de: CountryCode = *b"DE";
    let us: CountryCode = *b"US";
    GeoDb::from_networks(
        vec![("198.51.100.0/24".parse().unwrap(), de), ("203.0.113.0/24".parse().unwrap(), us)],
        Vec::new(),
    )
}

fn flow(remote: &str, tx: u64) -> FlowSample {
    FlowSample {
        id: FlowId {
            cgroup_id: 42,
            local: "192.0.2.1".parse().unwrap(),
            local_port: 40_000,
            remote: remote.parse().unwrap(),
            remote_port: 443,
            protocol: 6,
            first_seen_ns: 1,
        },
        tx_bytes: tx,
        finished: false,
    }
}

/// The owner map's answer: pid 4242 (`python3`) connected from cgroup 42 to 203.0.113.9.
fn owner(cgroup_id: u64, dst: IpAddr) -> Option<Process> {
    (cgroup_id == 42 && dst == "203.0.113.9".parse::<IpAddr>().unwrap())
        .then(|| Process { pid: 4242, comm: "python3".into() })
}

fn nobody(_: u64, _: IpAddr) -> Option<Process> {
    None
}

/// No address was learned for an approved sink's name.
fn unlearned(_: IpAddr) -> bool {
    false
}

const BULK: &str = "    approvedSinks: { countries: [DE], cidrs: [192.0.2.60/32], peers: true }\n    bulk: { bytes: 100MB, window: 1m }\n    action: block\n    blockFor: 15m\n";

#[test]
fn approved_by_country_cidr_policy_peer_and_agent_peer_alert_on_everything_else() {
    let (geo, now) = (geo(), Instant::now());
    let mut m = ExfilMonitor::new(&policy("enforce", BULK)).expect("monitor");
    m.set_peer_addresses(vec!["192.0.2.70/32".parse().unwrap()]);
    let quiet = ["198.51.100.7", "192.0.2.60", "192.0.2.50", "192.0.2.70"];
    let flows: Vec<FlowSample> = quiet.iter().map(|d| flow(d, 500 * MB)).collect();
    assert!(
        m.poll(now, &flows, Some(&geo), &owner, &unlearned).is_empty(),
        "approved: DE, cidr, spec.peers, wg peer"
    );

    let alerts = m.poll(
        now + Duration::from_secs(1),
        &[flow("203.0.113.9", 150 * MB)],
        Some(&geo),
        &owner,
        &unlearned,
    );
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let a = &alerts[0];
    assert_eq!((a.kind, a.action, a.block_secs), (AlertKind::Bulk, "block", Some(900)));
    assert_eq!((a.pid, a.comm.as_deref(), a.country.as_deref()), (Some(4242), Some("python3"), Some("US")));
    assert_eq!(
        (a.cgroup_id, a.destination, a.policy.as_str()),
        (42, "203.0.113.9".parse::<IpAddr>().unwrap(), "guard")
    );
    assert_eq!(m.block_for(), Duration::from_secs(900));
    let json = serde_json::to_value(a).expect("serialize");
    assert_eq!(
        (json["type"].as_str(), json["kind"].as_str()),
        (Some("exfiltration"), Some("bulk")),
        "{json}"
    );
    assert_eq!(a.kind.as_str(), "bulk", "metrics label = serialized kind");
}

#[test]
fn audit_mode_reports_would_block_and_ids_are_unique() {
    let now = Instant::now();
    let mut m = ExfilMonitor::new(&policy("audit", BULK)).expect("monitor");
    assert!(m.poll(now, &[], None, &owner, &unlearned).is_empty(), "first poll: the baseline");
    let flows = [flow("203.0.113.1", 200 * MB), flow("203.0.113.2", 200 * MB)];
    let alerts = m.poll(now, &flows, None, &owner, &unlearned);
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    assert!(alerts.iter().all(|a| a.action == "would-block" && a.block_secs.is_none()), "{alerts:?}");
    assert_ne!(alerts[0].id, alerts[1].id);
    assert!(alerts.iter().all(|a| a.pid.is_none() && a.country.is_none()), "no process, no geo db");
}

#[test]
fn an_unrelated_reload_keeps_state_and_a_rule_change_starts_over() {
    let now = Instant::now();
    let m = ExfilMonitor::new(&policy("enforce", BULK)).expect("monitor");
    let mut m = m.update(&policy("enforce", BULK)).expect("same rules");
    assert!(
        m.poll(now, &[flow("203.0.113.9", 500 * MB)], None, &nobody, &unlearned).is_empty(),
        "an agent (re)start: baseline"
    );
    assert!(
        m.poll(now, &[flow("203.0.113.9", 580 * MB)], None, &owner, &unlearned).is_empty(),
        "80 MB in the window"
    );
    let mut m = m.update(&policy("enforce", BULK)).expect("same rules");
    let a = m.poll(now + Duration::from_secs(1), &[flow("203.0.113.9", 620 * MB)], None, &owner, &unlearned);
    assert_eq!(a.len(), 1, "window kept across a reload with the same rules: {a:?}");
    let changed = BULK.replace("100MB", "110MB");
    let mut m = m.update(&policy("enforce", &changed)).expect("new rules");
    let a = m.poll(now + Duration::from_secs(2), &[flow("203.0.113.9", 630 * MB)], None, &owner, &unlearned);
    assert!(a.is_empty(), "new rules count from the new poll (10 MB so far): {a:?}");
    let plain = parse_policy(
        "apiVersion: ringfence.dev/v1\nkind: EgressPolicy\nmetadata: { name: plain }\nspec: { defaultAction: allow }\n",
    )
    .expect("policy");
    assert!(m.update(&plain).is_none(), "a policy without exfiltration ends the monitor");
}

#[test]
fn a_sink_named_by_domain_is_approved_only_while_its_address_is_learned() {
    let exfil = "    approvedSinks: { fqdns: [\"*.s3.example\"] }\n    bulk: { bytes: 100MB, window: 1m }\n";
    let doc = format!(
        "apiVersion: ringfence.dev/v1\nkind: EgressPolicy\nmetadata: {{ name: guard }}\nspec:\n  defaultAction: allow\n  dns: {{ resolvers: [192.0.2.53] }}\n  exfiltration:\n{exfil}"
    );
    let policy = parse_policy(&doc).unwrap_or_else(|e| panic!("policy: {e:?}"));
    let mut m = ExfilMonitor::new(&policy).expect("monitor");
    let now = Instant::now();
    let bucket: IpAddr = "203.0.113.9".parse().unwrap();
    let learned = move |a: IpAddr| a == bucket;
    assert!(m.poll(now, &[], None, &owner, &learned).is_empty(), "first poll: the baseline");
    let t = now + Duration::from_secs(1);
    assert!(m.poll(t, &[flow("203.0.113.9", 500 * MB)], None, &owner, &learned).is_empty(), "learned sink");
    // The same destination once its learned address expired (asked again, not cached).
    let t = now + Duration::from_secs(2);
    let alerts = m.poll(t, &[flow("203.0.113.9", 700 * MB)], None, &owner, &unlearned);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
}
