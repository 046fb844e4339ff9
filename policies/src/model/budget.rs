//! The validated `spec.exfiltration.budgets` and `spec.exfiltration.rateLimit`: what a workload
//! may send to destinations that are not approved sinks, enforced by the kernel.

use std::fmt;

use serde::Serialize;

use crate::quantities::{format_bytes, format_duration};

/// How many bytes a budget allows per window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum BudgetAmount {
    /// A fixed number of bytes (above 0).
    Bytes(u64),
    /// A share of the largest checkpoint the agent has seen (`0.01x checkpoint`), in parts per
    /// million (1 to 1,000,000). Zero bytes until a checkpoint was seen (fail closed).
    CheckpointPpm(u32),
}

/// One budget: an amount per window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Budget {
    pub amount: BudgetAmount,
    /// 1 s to [`Budget::MAX_WINDOW_SECS`].
    pub window_secs: u64,
}

/// `spec.exfiltration.budgets`. `dns` and `icmp` always apply when the section is given (with
/// [`Budgets::DEFAULT_DNS`] and [`Budgets::DEFAULT_ICMP`] when not written).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Budgets {
    /// Bytes to any one non-approved destination.
    pub per_destination: Option<Budget>,
    /// Bytes to all non-approved destinations together (DNS and ICMP excluded).
    pub total: Option<Budget>,
    /// Bytes to port 53 (UDP and TCP), whatever the destination: the resolver is a channel.
    pub dns: Budget,
    /// ICMP and ICMPv6 payload bytes.
    pub icmp: Budget,
}

impl Budget {
    /// The longest window: 7d.
    pub const MAX_WINDOW_SECS: u64 = 7 * 86_400;
}

impl Budgets {
    /// `dns` when not given: 64MiB per hour (a busy job's lookups are a few MB; a DNS tunnel
    /// carrying a checkpoint is not).
    pub const DEFAULT_DNS: Budget = Budget { amount: BudgetAmount::Bytes(64 << 20), window_secs: 3_600 };
    /// `icmp` when not given: 1MiB per hour of ICMP payload (pings carry a few dozen bytes).
    pub const DEFAULT_ICMP: Budget = Budget { amount: BudgetAmount::Bytes(1 << 20), window_secs: 3_600 };

    /// True if some budget is relative to the checkpoint size.
    pub fn relative(&self) -> bool {
        [self.per_destination, self.total, Some(self.dns), Some(self.icmp)]
            .iter()
            .flatten()
            .any(|b| matches!(b.amount, BudgetAmount::CheckpointPpm(_)))
    }
}

/// `1GiB/1h`, `0.01x checkpoint/24h`.
impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.amount {
            BudgetAmount::Bytes(b) => write!(f, "{}/{}", format_bytes(b), format_duration(self.window_secs)),
            BudgetAmount::CheckpointPpm(ppm) => {
                let ratio = format!("{:.6}", f64::from(ppm) / 1e6);
                let ratio = ratio.trim_end_matches('0').trim_end_matches('.');
                write!(f, "{ratio}x checkpoint/{}", format_duration(self.window_secs))
            }
        }
    }
}

/// `perDestination 1GiB/1h, total 10GiB/1d, dns 64MiB/1h, icmp 1MiB/1h`.
impl fmt::Display for Budgets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(b) = self.per_destination {
            parts.push(format!("perDestination {b}"));
        }
        if let Some(b) = self.total {
            parts.push(format!("total {b}"));
        }
        parts.push(format!("dns {}", self.dns));
        parts.push(format!("icmp {}", self.icmp));
        f.write_str(&parts.join(", "))
    }
}
