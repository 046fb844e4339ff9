//! Unit tests of the detector with synthetic inputs.
use std::{
    net::IpAddr,
    path::Path,
    time::{Duration, Instant},
};

use super::{
    checkpoints::CheckpointIndex,
    detector::{AlertKind, Detector, ExfilRules, FlowId, FlowSample, Severity},
};

const MIB: u64 = 1 << 20;

fn flow(remote: &str, port: u16, tx: u64) -> FlowSample {
    FlowSample {
        id: FlowId {
            cgroup_id: 7,
            local: "192.0.2.1".parse().unwrap(),
            local_port: 40000 + port,
            remote: remote.parse().unwrap(),
            remote_port: port,
            protocol: 6,
            first_seen_ns: 1,
        },
        tx_bytes: tx,
        finished: false,
    }
}

fn finished(mut f: FlowSample) -> FlowSample {
    f.finished = true;
    f
}

fn approved(addr: IpAddr) -> bool {
    addr == "198.51.100.10".parse::<IpAddr>().unwrap()
}

fn bulk(threshold: u64, secs: u64) -> Detector {
    Detector::new(ExfilRules {
        bulk: Some((threshold, Duration::from_secs(secs))),
        checkpoint_tolerance: None,
        block: false,
    })
}

#[test]
fn bulk_fires_once_when_crossing_and_never_for_approved_sinks() {
    let (t0, idx) = (Instant::now(), CheckpointIndex::new(Duration::from_secs(3600)));
    let mut d = bulk(150 * MIB, 600);
    assert!(d
        .observe(
            t0,
            &[flow("203.0.113.5", 443, 100 * MIB), flow("198.51.100.10", 443, 900 * MIB)],
            approved,
            &idx
        )
        .is_empty());
    let a = d.observe(t0 + Duration::from_secs(1), &[flow("203.0.113.5", 443, 200 * MIB)], approved, &idx);
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(
        (a[0].kind, a[0].severity, a[0].bytes, a[0].cgroup_id),
        (AlertKind::Bulk, Severity::High, 200 * MIB, 7)
    );
    assert!(a[0].explanation.contains("203.0.113.5"), "{}", a[0].explanation);
    assert!(
        d.observe(t0 + Duration::from_secs(2), &[flow("203.0.113.5", 443, 300 * MIB)], approved, &idx)
            .is_empty(),
        "dedup"
    );
}

#[test]
fn many_small_flows_and_slow_trickles_stay_quiet() {
    let (t0, idx) = (Instant::now(), CheckpointIndex::new(Duration::from_secs(3600)));
    let mut d = bulk(150 * MIB, 10);
    let small: Vec<FlowSample> = (0..100).map(|i| flow(&format!("203.0.113.{}", i + 1), 443, MIB)).collect();
    assert!(d.observe(t0, &small, approved, &idx).is_empty(), "100 destinations x 1 MiB");
    // 100 MiB every 20 s to one destination: never 150 MiB within 10 s.
    for step in 1..=5u64 {
        let a = d.observe(
            t0 + Duration::from_secs(20 * step),
            &[flow("203.0.113.200", 443, 100 * MIB * step)],
            approved,
            &idx,
        );
        assert!(a.is_empty(), "step {step}: {a:?}");
    }
}

#[test]
fn a_transfer_the_size_of_a_checkpoint_names_the_file() {
    let t0 = Instant::now();
    let mut idx = CheckpointIndex::new(Duration::from_secs(3600));
    idx.observe(t0, Path::new("/data/ckpt/step-1000.pt"), 200 * MIB);
    let mut d = Detector::new(ExfilRules { bulk: None, checkpoint_tolerance: Some(0.02), block: true });
    assert!(d.observe(t0, &[flow("203.0.113.5", 443, 150 * MIB)], approved, &idx).is_empty(), "not yet");
    let at = |s| t0 + Duration::from_secs(s);
    assert!(
        d.observe(at(1), &[flow("203.0.113.5", 443, 197 * MIB)], approved, &idx).is_empty(),
        "a transfer still growing is not compared"
    );
    let a = d.observe(at(2), &[finished(flow("203.0.113.5", 443, 197 * MIB))], approved, &idx);
    assert_eq!(
        a.len(),
        1,
        "one alert per destination and file, not one for the flow and one for the total: {a:?}"
    );
    let hit = &a[0];
    assert_eq!(hit.port, Some(443), "the flow matched first: {hit:?}");
    assert_eq!((hit.kind, hit.severity, hit.block), (AlertKind::Checkpoint, Severity::Critical, true));
    assert_eq!(hit.file.as_deref(), Some(Path::new("/data/ckpt/step-1000.pt")));
    for s in 3..6 {
        let again = d.observe(at(s), &[finished(flow("203.0.113.5", 443, 197 * MIB))], approved, &idx);
        assert!(again.is_empty(), "dedup (the destination total settles at {s}s): {again:?}");
    }
    // The same bytes to an approved sink: nothing.
    let mut d2 = Detector::new(ExfilRules { bulk: None, checkpoint_tolerance: Some(0.02), block: false });
    assert!(d2.observe(t0, &[finished(flow("198.51.100.10", 443, 200 * MIB))], approved, &idx).is_empty());
}

#[test]
fn an_idle_flow_settles_and_a_larger_transfer_passing_through_the_size_never_matches() {
    let t0 = Instant::now();
    let mut idx = CheckpointIndex::new(Duration::from_secs(3600));
    idx.observe(t0, Path::new("/data/ckpt/step-7.pt"), 100 * MIB);
    let mut d = Detector::new(ExfilRules { bulk: None, checkpoint_tolerance: Some(0.02), block: false });
    let at = |ms| t0 + Duration::from_millis(ms);
    // 3x the checkpoint, polled every 500 ms, crossing 100 MiB on the way, then finished.
    for (i, mib) in [20, 60, 100, 101, 140, 200, 260, 300].into_iter().enumerate() {
        let a = d.observe(at(500 * i as u64), &[flow("203.0.113.5", 443, mib * MIB)], approved, &idx);
        assert!(a.is_empty(), "{mib} MiB on the way: {a:?}");
    }
    for i in 8..16 {
        let a = d.observe(at(500 * i), &[finished(flow("203.0.113.5", 443, 300 * MIB))], approved, &idx);
        assert!(a.is_empty(), "3x the checkpoint, finished: {a:?}");
    }
    // An exact-size UDP flow that goes quiet matches once it has been idle for SETTLE.
    let udp = |tx| {
        let mut f = flow("203.0.113.6", 53, tx);
        f.id.protocol = 17;
        f
    };
    assert!(d.observe(at(9_000), &[udp(100 * MIB)], approved, &idx).is_empty(), "just arrived");
    assert!(d.observe(at(10_000), &[udp(100 * MIB)], approved, &idx).is_empty(), "idle 1 s: not settled");
    let a = d.observe(at(11_100), &[udp(100 * MIB)], approved, &idx);
    assert_eq!(a.len(), 1, "idle for SETTLE: {a:?}");
}

#[test]
fn a_flow_alerts_once_across_reloads_releases_and_restarts() {
    let t0 = Instant::now();
    let mut idx = CheckpointIndex::new(Duration::from_secs(3600));
    idx.observe(t0, Path::new("/data/ckpt/step-9.pt"), 64 * MIB);
    let rules = ExfilRules { bulk: None, checkpoint_tolerance: Some(0.02), block: true };
    let done = [finished(flow("203.0.113.5", 443, 64 * MIB))];
    let mut d = Detector::new(rules.clone());
    assert_eq!(d.observe(t0, &done, approved, &idx).len(), 1);
    let saved = d.take_fired_change().expect("the alerted flow is to be saved");
    assert_eq!(saved, vec![done[0].id]);
    d.retune(ExfilRules { bulk: Some((10 * MIB, Duration::from_secs(60))), ..rules.clone() });
    assert!(d.observe(t0 + Duration::from_secs(3), &done, approved, &idx).is_empty(), "after a rule change");
    d.forgive(7, "203.0.113.5".parse().unwrap());
    assert!(d.observe(t0 + Duration::from_secs(6), &done, approved, &idx).is_empty(), "after a release");
    // A restarted agent restores the saved flows and takes the counters as its baseline.
    let mut restarted = Detector::new(rules);
    restarted.restore_fired(saved);
    restarted.prime(t0, &done);
    for s in [1, 4, 8] {
        let a = restarted.observe(t0 + Duration::from_secs(s), &done, approved, &idx);
        assert!(a.is_empty(), "after a restart ({s}s): {a:?}");
    }
    // A new transfer (another flow) of the same size after the release is a new event.
    let mut next = done;
    next[0].id.first_seen_ns = 2;
    next[0].finished = true;
    assert_eq!(restarted.observe(t0 + Duration::from_secs(9), &next, approved, &idx).len(), 1);
    // Once the first flow is gone from the table it is no longer kept.
    let kept = restarted.take_fired_change().expect("changed");
    assert_eq!(kept, vec![next[0].id]);
}

#[test]
fn a_restarted_flow_counts_from_zero() {
    let (t0, idx) = (Instant::now(), CheckpointIndex::new(Duration::from_secs(3600)));
    let mut d = bulk(150 * MIB, 600);
    assert!(d.observe(t0, &[flow("203.0.113.5", 443, 100 * MIB)], approved, &idx).is_empty());
    // Same 5-tuple, counter restarted at 60 MiB: 160 MiB in the window.
    let a = d.observe(t0 + Duration::from_secs(1), &[flow("203.0.113.5", 443, 60 * MIB)], approved, &idx);
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(a[0].bytes, 160 * MIB);
}
