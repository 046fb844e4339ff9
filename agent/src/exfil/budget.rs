//! Budget crossings reported by the kernel (`VERDICT_BUDGET` events, one per budget and window)
//! turned into alert records, sans-IO: the event, the policy that set the budget, the largest
//! checkpoint seen and the clocks go in; the record comes out. The kernel has already dropped
//! the packet and refuses the rest of the window: the record's action is `block`.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ringfence_common::{budget_kind_name, Event, BUDGET_DEST, BUDGET_DNS, BUDGET_ICMP, BUDGET_TOTAL};
use ringfence_policy::{Budget, BudgetAmount, Policy};

use super::{
    detector::{AlertKind, Severity},
    monitor::AlertRecord,
};

/// What the agent knows when a crossing arrives.
pub struct Crossing<'a> {
    pub event: &'a Event,
    /// The policy that governs the workload (None: unknown, e.g. replaced since).
    pub policy: Option<&'a Policy>,
    pub largest_checkpoint: u64,
    /// `CLOCK_MONOTONIC` now and the wall clock now (ms).
    pub monotonic_ns: u64,
    pub unix_ms: u64,
    pub id: String,
}

/// The budget of `kind` under `policy`, in bytes, and its window in seconds.
pub fn budget_of(policy: &Policy, kind: u32, largest_checkpoint: u64) -> Option<(u64, u64)> {
    let b = policy.exfiltration.as_ref()?.budgets?;
    let budget: Budget = match kind {
        BUDGET_DEST => b.per_destination?,
        BUDGET_TOTAL => b.total?,
        BUDGET_DNS => b.dns,
        BUDGET_ICMP => b.icmp,
        _ => return None,
    };
    let bytes = match budget.amount {
        BudgetAmount::Bytes(n) => n,
        BudgetAmount::CheckpointPpm(ppm) => {
            (u128::from(largest_checkpoint) * u128::from(ppm) / 1_000_000) as u64
        }
    };
    Some((bytes, budget.window_secs))
}

fn destination(ev: &Event) -> IpAddr {
    match ev.family {
        6 => IpAddr::V6(Ipv6Addr::from(ev.daddr)),
        _ => IpAddr::V4(Ipv4Addr::new(ev.daddr[0], ev.daddr[1], ev.daddr[2], ev.daddr[3])),
    }
}

/// The alert record of a crossing. `latency_ms` is the time from the kernel's crossing to now.
pub fn crossing_record(c: &Crossing<'_>) -> AlertRecord {
    let ev = c.event;
    let kind = ev.dport;
    let name = budget_kind_name(kind);
    let budget = c.policy.and_then(|p| budget_of(p, kind, c.largest_checkpoint));
    let comm_len = ev.comm.iter().position(|&b| b == 0).unwrap_or(ev.comm.len());
    let dst = destination(ev);
    let explanation = match budget {
        Some((bytes, window)) => format!(
            "the {name} exfiltration budget ({bytes} bytes per {window} s) is spent: the kernel drops the workload's further packets{} and refuses new connections until the window ends",
            if kind == BUDGET_DEST { format!(" to {dst}") } else { " to destinations that are not approved sinks".to_owned() }
        ),
        None => format!("the {name} exfiltration budget is spent (the policy that set it was replaced)"),
    };
    AlertRecord {
        id: c.id.clone(),
        record_type: "exfiltration",
        unix_ms: c.unix_ms,
        kind: AlertKind::Budget,
        severity: Severity::Critical,
        policy: c.policy.map(|p| p.name.clone()).unwrap_or_default(),
        pid: (ev.pid != 0).then_some(ev.pid),
        comm: (comm_len > 0).then(|| String::from_utf8_lossy(&ev.comm[..comm_len]).into_owned()),
        cgroup_id: ev.cgroup_id,
        destination: dst,
        port: None,
        country: None,
        bytes: budget.map_or(0, |(b, _)| b),
        file: None,
        action: "block",
        block_secs: budget.map(|(_, w)| w),
        explanation,
        workload: None,
        labels: None,
        budget: Some(name),
        latency_ms: Some(c.monotonic_ns.saturating_sub(ev.ts_ns) as f64 / 1e6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: u32) -> Event {
        let mut daddr = [0; 16];
        daddr[..4].copy_from_slice(&[203, 0, 113, 9]);
        Event {
            ts_ns: 1_000_000_000,
            cgroup_id: 42,
            pid: 7,
            tid: 7,
            comm: *b"curl\0\0\0\0\0\0\0\0\0\0\0\0",
            daddr,
            family: 4,
            dport: kind,
            protocol: 6,
            verdict: ringfence_common::VERDICT_BUDGET,
            rule_id: ringfence_common::RULE_BUDGET,
            hook: ringfence_common::HOOK_SKB_EGRESS,
            generation: 0,
            country: 0,
            sock_family: 0,
            sock_type: 0,
            sock_level: 0,
            sock_opt: 0,
        }
    }

    #[test]
    fn a_crossing_names_the_budget_and_its_latency() {
        let policy = ringfence_policy::parse_policy(
            "apiVersion: ringfence.dev/v1\nkind: EgressPolicy\nmetadata: {name: p}\nspec:\n  defaultAction: allow\n  exfiltration:\n    checkpoints: {paths: [/ckpt]}\n    budgets: {perDestination: 1MiB/1m, total: 0.5x checkpoint/1h}\n",
        )
        .unwrap();
        let ev = event(BUDGET_DEST);
        let c = Crossing {
            event: &ev,
            policy: Some(&policy),
            largest_checkpoint: 10_000,
            monotonic_ns: 1_012_500_000,
            unix_ms: 5,
            id: "x-1".into(),
        };
        let r = crossing_record(&c);
        assert_eq!((r.bytes, r.block_secs, r.budget), (1 << 20, Some(60), Some("perDestination")));
        assert_eq!(r.destination, "203.0.113.9".parse::<IpAddr>().unwrap());
        assert_eq!((r.pid, r.comm.as_deref(), r.action), (Some(7), Some("curl"), "block"));
        assert!((r.latency_ms.unwrap() - 12.5).abs() < 1e-9);
        assert!(r.explanation.contains("to 203.0.113.9"), "{}", r.explanation);
        let ev = event(BUDGET_TOTAL);
        let r = crossing_record(&Crossing { event: &ev, ..c });
        assert_eq!((r.bytes, r.block_secs), (5_000, Some(3_600)));
        assert_eq!(budget_of(&policy, BUDGET_DNS, 0), Some((64 << 20, 3_600)));
    }
}
