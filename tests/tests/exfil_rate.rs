//! The rate cap (`spec.exfiltration.rateLimit`): a workload that tries to send 1 GB to a
//! destination that is not an approved sink gets at most 1.05 times the cap over any second,
//! counted at the receiver, while its upload to an approved sink runs in parallel uncapped.
//! Run as root, serially.
use std::time::{Duration, Instant};

use ringfence_tests::{policy_head_with, Enforced, Sink};

const CAPPED: &str = "203.0.113.5";
const APPROVED: &str = "198.51.100.10";
const SINK_PORT: u16 = 9000;
/// 20 MB/s: well under what the lab's veth carries on a busy 2-core machine, so the cap (not the
/// link) limits.
const RATE: u64 = 20_000_000;
/// The attempt: 1 GB at line rate (watched for [`WATCH`], not waited for: at the cap it takes
/// minutes), and the parallel upload to the approved sink.
const ATTEMPT: u64 = 1_000_000_000;
const APPROVED_BYTES: u64 = 256 << 20;
const WATCH: Duration = Duration::from_secs(6);

#[test]
fn a_rate_cap_holds_within_5_percent_while_an_approved_sink_runs_at_full_speed() {
    let exfil = format!(
        "  exfiltration:\n    approvedSinks: {{ cidrs: [{APPROVED}/32] }}\n    rateLimit: {RATE}B/s\n"
    );
    let policy = policy_head_with("rate-cap", "enforce", "allow", &exfil)
        + "    - name: everything\n      action: allow\n      to: { cidrs: [0.0.0.0/0, \"::/0\"] }\n";
    let e = Enforced::start("rate-cap", &[443], &policy);
    let sink = Sink::start(&e.lab, SINK_PORT, None);

    let bytes = ATTEMPT.to_string();
    let port = SINK_PORT.to_string();
    let capped_args = ["stream", CAPPED, &port, "--bytes", &bytes, "--timeout-ms", "60000"];
    let started = Instant::now();
    let mut capped = e.lab.spawn_probe(&capped_args);
    // In parallel: the approved sink, at whatever the veth gives.
    let approved_bytes = APPROVED_BYTES.to_string();
    let approved =
        e.lab.probe(&["tcp", APPROVED, "443", "--bytes", &approved_bytes, "--timeout-ms", "60000"]);
    let approved_rate = APPROVED_BYTES as f64 / started.elapsed().as_secs_f64();
    approved.assert_ok("the upload to the approved sink");
    while started.elapsed() < WATCH {
        assert!(capped.try_wait().expect("capped upload").is_none(), "the capped upload ended early");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = capped.kill();
    let _ = capped.wait();
    let watched = started.elapsed().as_secs_f64();
    let received = sink.settled(Duration::from_millis(300), Duration::from_secs(10)).tcp;

    let worst = sink.max_tcp_in(Duration::from_secs(1));
    let ratio = worst as f64 / RATE as f64;
    // The fraction of the cap TCP achieves: about a quarter (see the README's rate cap limits).
    let achieved = received as f64 / watched / RATE as f64;
    eprintln!(
        "rate cap {RATE} B/s: worst 1 s {worst} B ({ratio:.3}x), achieved {achieved:.3}x the cap on average ({received} B over {watched:.1} s); approved sink in parallel {approved_rate:.0} B/s"
    );
    assert!(ratio <= 1.05, "over any 1 s at most 1.05x the cap: {ratio:.3}");
    assert!(achieved >= 0.2, "the capped upload still moves: {achieved:.3}x the cap on average");
    assert!(approved_rate > 1.5 * RATE as f64, "the approved sink is not capped: {approved_rate:.0} B/s");
}
