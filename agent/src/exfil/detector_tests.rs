//! Unit tests of the detector with synthetic inputs.
use std::{
    net::IpAddr,
    path::Path,
    time::{Duration, Instant},
};

use super::{
    checkpoints::CheckpointIndex,
    detector::{AlertKind, Detector, ExfilRules, FlowSample, Severity},
};

const MIB: u64 = 1 << 20;

fn flow(remote: &str, port: u16, tx: u64) -> FlowSample {
    FlowSample {
        cgroup_id: 7,
        local: "192.0.2.1".parse().unwrap(),
        local_port: 40000 + port,
        remote: remote.parse().unwrap(),
        remote_port: port,
        protocol: 6,
        tx_bytes: tx,
    }
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
    let a = d.observe(t0 + Duration::from_secs(1), &[flow("203.0.113.5", 443, 197 * MIB)], approved, &idx);
    assert_eq!(
        a.len(),
        1,
        "one alert per destination and file, not one for the flow and one for the total: {a:?}"
    );
    let hit = &a[0];
    assert_eq!(hit.port, Some(443), "the flow matched first: {hit:?}");
    assert_eq!((hit.kind, hit.severity, hit.block), (AlertKind::Checkpoint, Severity::Critical, true));
    assert_eq!(hit.file.as_deref(), Some(Path::new("/data/ckpt/step-1000.pt")));
    assert!(
        d.observe(t0 + Duration::from_secs(2), &[flow("203.0.113.5", 443, 198 * MIB)], approved, &idx)
            .is_empty(),
        "dedup"
    );
    // The same bytes to an approved sink: nothing.
    let mut d2 = Detector::new(ExfilRules { bulk: None, checkpoint_tolerance: Some(0.02), block: false });
    assert!(d2.observe(t0, &[flow("198.51.100.10", 443, 200 * MIB)], approved, &idx).is_empty());
}

#[test]
fn sharded_checkpoints_match_a_destination_total_over_several_flows() {
    let t0 = Instant::now();
    let mut idx = CheckpointIndex::new(Duration::from_secs(3600));
    for i in 1..=4 {
        idx.observe(
            t0,
            &Path::new("/data/ckpt").join(format!("model-0000{i}-of-00004.safetensors")),
            50 * MIB,
        );
    }
    let mut d = Detector::new(ExfilRules { bulk: None, checkpoint_tolerance: Some(0.02), block: false });
    let flows = [flow("203.0.113.5", 443, 100 * MIB), flow("203.0.113.5", 8443, 100 * MIB)];
    let a = d.observe(t0, &flows, approved, &idx);
    let total =
        a.iter().find(|a| a.port.is_none()).unwrap_or_else(|| panic!("destination total match: {a:?}"));
    assert_eq!(total.bytes, 200 * MIB);
    assert!(total.explanation.contains("4 shards"), "{}", total.explanation);
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
