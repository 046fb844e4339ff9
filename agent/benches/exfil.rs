//! Exfiltration detector cost at fleet scale: one poll over 100,000 active flows (every flow sent
//! more bytes since the last poll: the worst case), against a baseline in the same run that only
//! indexes the same samples by flow (the least any per-flow tracker must do). Also reports the
//! detector's heap for those flows, counted by a wrapping allocator.
//!
//! `cargo bench -p ringfence-agent --bench exfil` (or `cargo xtask bench-exfil`).
use std::{
    alloc::{GlobalAlloc, Layout, System},
    collections::HashMap,
    hint::black_box,
    net::{IpAddr, Ipv4Addr},
    path::Path,
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use criterion::{criterion_group, criterion_main, Criterion};
use ringfence_agent::exfil::{CheckpointIndex, Detector, ExfilRules, FlowId, FlowSample};

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size(), Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const FLOWS: usize = 100_000;
const MIB: u64 = 1 << 20;

/// 100k flows from 1,000 cgroups… to 10,000 destinations (10 flows each).
fn flows(round: u64) -> Vec<FlowSample> {
    (0..FLOWS)
        .map(|i| {
            let d = (i / 10) as u32;
            FlowSample {
                id: FlowId {
                    cgroup_id: 1000 + (i % 1000) as u64,
                    local: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
                    local_port: 10_000 + (i % 50_000) as u16,
                    remote: IpAddr::V4(Ipv4Addr::from(0xc633_6400 + d)),
                    remote_port: 443 + (i % 10) as u16,
                    protocol: 6,
                    first_seen_ns: 1 + i as u64,
                },
                tx_bytes: round * 64 * 1024 + i as u64,
                finished: false,
            }
        })
        .collect()
}

fn rules() -> ExfilRules {
    ExfilRules {
        bulk: Some((2 << 30, Duration::from_secs(600))),
        checkpoint_tolerance: Some(0.02),
        block: false,
    }
}

fn checkpoints() -> CheckpointIndex {
    let mut idx = CheckpointIndex::new(Duration::from_secs(86_400));
    let now = Instant::now();
    for i in 1..=4 {
        idx.observe(
            now,
            &Path::new("/data/ckpt").join(format!("model-0000{i}-of-00004.safetensors")),
            900 * MIB,
        );
    }
    idx.observe(now, Path::new("/data/ckpt/step-9000.pt"), 3 << 30);
    idx
}

fn bench(c: &mut Criterion) {
    let idx = checkpoints();
    let polls: Vec<Vec<FlowSample>> = (1..=8).map(flows).collect();
    let t0 = Instant::now();

    let before = LIVE.load(Ordering::Relaxed);
    let mut d = Detector::new(rules());
    for (i, p) in polls.iter().take(4).enumerate() {
        black_box(d.observe(t0 + Duration::from_secs(i as u64), p, |_| false, &idx));
    }
    let heap = LIVE.load(Ordering::Relaxed) - before;
    let (f, dests) = d.tracked();
    println!(
        "detector state: {:.1} MiB for {f} flows / {dests} destinations ({} bytes per flow)",
        heap as f64 / MIB as f64,
        heap / f
    );

    let mut g = c.benchmark_group("exfil_poll_100k_flows");
    g.sample_size(20).measurement_time(Duration::from_secs(10));
    let mut round = 4u64;
    let mut last: HashMap<FlowId, u64> = HashMap::new();
    g.bench_function("baseline_index_samples", |b| {
        b.iter(|| {
            round += 1;
            black_box(baseline(&mut last, &polls[(round % 8) as usize]))
        })
    });
    g.bench_function("detector_observe", |b| {
        b.iter(|| {
            round += 1;
            let p = &polls[(round % 8) as usize];
            black_box(d.observe(t0 + Duration::from_secs(round), p, |_| false, &idx))
        })
    });
    g.finish();

    // The same two, interleaved, for one summary line with the ratio.
    let (mut base, mut det) = (Vec::new(), Vec::new());
    for _ in 0..15 {
        round += 1;
        let p = &polls[(round % 8) as usize];
        let t = Instant::now();
        black_box(baseline(&mut last, p));
        base.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        black_box(d.observe(t0 + Duration::from_secs(round), p, |_| false, &idx));
        det.push(t.elapsed().as_secs_f64());
    }
    let (b, m) = (median(base), median(det));
    println!(
        "poll of {FLOWS} flows: detector {:.1} ms = {:.2}x the baseline ({:.1} ms); {:.2}% of one core at a 1 s poll",
        m * 1e3,
        m / b,
        b * 1e3,
        m * 100.0
    );
}

/// The least a per-flow tracker does: index this poll's counters by flow, against the last.
fn baseline(last: &mut HashMap<FlowId, u64>, p: &[FlowSample]) -> usize {
    let mut next = HashMap::with_capacity(p.len());
    for s in p {
        let prev = last.get(&s.id).copied().unwrap_or(0);
        next.insert(s.id, s.tx_bytes.wrapping_sub(prev));
    }
    *last = next;
    last.len()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    v[v.len() / 2]
}

criterion_group!(benches, bench);
criterion_main!(benches);
