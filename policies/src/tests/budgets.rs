//! `spec.exfiltration.budgets` and `rateLimit`: the accepted forms, the defaults and the errors.

use super::{assert_diag, doc, parse_err, parse_ok};
use crate::model::{Budget, BudgetAmount, Budgets};
use crate::validate::parse_budget;

fn exfil(body: &str) -> String {
    doc(&format!("  defaultAction: allow\n  exfiltration:\n{body}"))
}

#[test]
fn absolute_and_relative_budgets_parse_with_defaults() {
    let p = parse_ok(&exfil(
        "    checkpoints: {paths: [/data/ckpt]}
    budgets:
      perDestination: 1GiB/1h
      total: 0.01x checkpoint/24h
    rateLimit: 10MB/s
",
    ));
    let e = p.exfiltration.expect("section");
    let b = e.budgets.expect("budgets");
    assert_eq!(b.per_destination, Some(Budget { amount: BudgetAmount::Bytes(1 << 30), window_secs: 3_600 }));
    assert_eq!(b.total, Some(Budget { amount: BudgetAmount::CheckpointPpm(10_000), window_secs: 86_400 }));
    assert_eq!(b.dns, Budgets::DEFAULT_DNS);
    assert_eq!(b.icmp, Budgets::DEFAULT_ICMP);
    assert!(b.relative());
    assert_eq!(e.rate_limit, Some(10_000_000));
    assert_eq!(
        b.to_string(),
        "perDestination 1GiB/1h, total 0.01x checkpoint/1d, dns 64MiB/1h, icmp 1MiB/1h"
    );
}

#[test]
fn budgets_alone_make_a_section() {
    let p = parse_ok(&exfil("    budgets: {total: 500MB/10m, dns: 1MB/1m, icmp: 10KiB/1h}\n"));
    let b = p.exfiltration.expect("section").budgets.expect("budgets");
    assert_eq!(b.per_destination, None);
    assert_eq!(b.total, Some(Budget { amount: BudgetAmount::Bytes(500_000_000), window_secs: 600 }));
    assert_eq!(b.dns.amount, BudgetAmount::Bytes(1_000_000));
    assert_eq!(b.icmp, Budget { amount: BudgetAmount::Bytes(10 << 10), window_secs: 3_600 });
}

#[test]
fn budget_forms_round_trip_and_bad_ones_say_why() {
    for text in ["1GiB/1h", "0.5x checkpoint/1d", "1x checkpoint/7d", "123B/30s"] {
        assert_eq!(parse_budget(text).unwrap().to_string(), text);
    }
    for (text, why) in [
        ("1GiB", "expected BYTES/WINDOW"),
        ("0B/1h", "greater than 0 bytes"),
        ("1GiB/0s", "longer than 0s"),
        ("1GiB/8d", "maximum of 7d"),
        ("2x checkpoint/1h", "at most 1x"),
        ("0x checkpoint/1h", "above 0"),
        ("0.0000001x checkpoint/1h", "expected a ratio"),
        ("1 gigs/1h", "unknown unit"),
    ] {
        let err = parse_budget(text).unwrap_err();
        assert!(err.contains(why), "{text}: {err}");
    }
}

#[test]
fn every_budget_error_is_reported_at_its_position() {
    let diags = parse_err(&exfil(
        "    budgets:
      perDestination: 1GiB
      total: 0.01x checkpoint/1h
      hourly: 1GiB/1h
    rateLimit: 10MB
",
    ));
    let ctx = "in spec.exfiltration.budgets";
    assert_diag(&diags, 9, 23, &format!("invalid perDestination \"1GiB\" {ctx}: expected BYTES/WINDOW"));
    assert_diag(
        &diags,
        10,
        14,
        "is relative to the checkpoint size, but spec.exfiltration has no \"checkpoints\"",
    );
    assert_diag(&diags, 11, 7, "unknown field \"hourly\" in spec.exfiltration.budgets");
    assert_diag(&diags, 12, 16, "invalid rateLimit \"10MB\" in spec.exfiltration: expected BYTES/s");
    let diags = parse_err(&exfil("    budgets: {dns: 1MB/1h}\n"));
    assert_diag(&diags, 8, 14, "sets no transfer budget");
}

#[test]
fn budgets_compile_to_the_kernel_config_with_sinks() {
    use ringfence_common::{BUDGET_DEST, BUDGET_DNS, BUDGET_TOTAL};
    let p = parse_ok(&doc("  defaultAction: allow
  peers: {cidrs: [192.0.2.0/28]}
  exfiltration:
    approvedSinks: {cidrs: [198.51.100.0/25, 198.51.100.128/25, 2001:db8::/48], peers: true}
    checkpoints: {paths: [/data/ckpt]}
    budgets: {perDestination: 1MiB/1m, total: 0.5x checkpoint/1h}
    rateLimit: 100MB/s
"));
    let c = crate::compile(&p, None).unwrap();
    let b = c.budgets.expect("budgets compiled");
    assert_eq!(b.config.enabled, 1);
    let dest = b.config.limits[BUDGET_DEST as usize];
    assert_eq!((dest.bytes, dest.window_ns, dest.ppm, dest.enabled), (1 << 20, 60_000_000_000, 0, 1));
    let total = b.config.limits[BUDGET_TOTAL as usize];
    assert_eq!((total.bytes, total.ppm), (0, 500_000));
    assert_eq!(b.config.limits[BUDGET_DNS as usize].bytes, 64 << 20);
    assert_eq!((b.config.rate_bytes_per_sec, b.config.rate_burst), (100_000_000, 2_500_000));
    // Adjacent halves merge; the peers are sinks.
    assert_eq!(b.sink4, vec![([192, 0, 2, 0], 28), ([198, 51, 100, 0], 24)]);
    assert_eq!(b.sink6.len(), 1);
    // Audit mode drops nothing: no budgets in the kernel.
    let audit = parse_ok(&doc(
        "  defaultAction: allow\n  mode: audit\n  exfiltration:\n    budgets: {total: 1GiB/1h}\n",
    ));
    assert!(crate::compile(&audit, None).unwrap().budgets.is_none());
    assert_eq!(crate::compile::rate_burst(1_000_000), crate::compile::MIN_RATE_BURST);
}
