//! Compilation of `spec.exfiltration.budgets` and `rateLimit` into the kernel's
//! [`BudgetConfig`] and the approved-sink prefixes (never counted nor capped): the sinks' CIDRs,
//! the peer prefixes with `approvedSinks.peers`, and the database networks of approved
//! countries (without a database those are not sinks: their traffic is counted, fail closed).

use ipnet::{Ipv4Net, Ipv6Net};
use ringfence_common::{BudgetConfig, BudgetLimit, BUDGET_DEST, BUDGET_DNS, BUDGET_ICMP, BUDGET_TOTAL};

use super::encrypt::{finish, split, PrefixSet};
use super::error::CompileError;
use crate::geo::GeoDb;
use crate::model::{Budget, BudgetAmount, Mode, Policy};
use crate::prefix::inside_v4_mapped;

/// A policy's budgets in kernel form.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompiledBudgets {
    pub config: BudgetConfig,
    /// Approved sinks: (masked address, prefix length), sorted, aggregated.
    pub sink4: PrefixSet<4>,
    pub sink6: PrefixSet<16>,
}

/// The smallest token bucket: a TSO/GSO packet (64 KiB) must always fit.
pub const MIN_RATE_BURST: u64 = 128 << 10;

/// The bucket's depth for a rate cap, and the debt it may run into with congestion
/// notification: 1/40 s of the rate each (so any 1 s lets at most 1.05 times the rate out), at
/// least [`MIN_RATE_BURST`].
pub fn rate_burst(rate: u64) -> u64 {
    (rate / 40).max(MIN_RATE_BURST)
}

fn limit(b: Option<Budget>) -> BudgetLimit {
    let Some(b) = b else { return BudgetLimit::default() };
    let (bytes, ppm) = match b.amount {
        BudgetAmount::Bytes(n) => (n, 0),
        BudgetAmount::CheckpointPpm(p) => (0, p),
    };
    BudgetLimit { bytes, window_ns: b.window_secs.saturating_mul(1_000_000_000), ppm, enabled: 1 }
}

/// The budgets of `policy` (`None`: it has none, or is in audit mode, where nothing is dropped).
pub(super) fn build_budgets(
    policy: &Policy,
    geo: Option<&GeoDb>,
) -> Result<Option<CompiledBudgets>, CompileError> {
    let Some(x) = policy.exfiltration.as_ref() else { return Ok(None) };
    if (x.budgets.is_none() && x.rate_limit.is_none()) || policy.mode == Mode::Audit {
        return Ok(None);
    }
    let mut config = BudgetConfig { enabled: 1, ..Default::default() };
    if let Some(b) = x.budgets {
        config.limits[BUDGET_DEST as usize] = limit(b.per_destination);
        config.limits[BUDGET_TOTAL as usize] = limit(b.total);
        config.limits[BUDGET_DNS as usize] = limit(Some(b.dns));
        config.limits[BUDGET_ICMP as usize] = limit(Some(b.icmp));
    }
    if let Some(rate) = x.rate_limit {
        config.rate_bytes_per_sec = rate;
        config.rate_burst = rate_burst(rate);
    }
    if !x.approved.fqdns.is_empty() {
        config.sink_names_floor = policy.dns.min_ttl_secs.max(1);
    }
    let a = &x.approved;
    let peers = if a.peers { policy.peers.as_slice() } else { &[] };
    let (mut v4, mut v6) = split(a.cidrs.iter().chain(peers).copied());
    if let (Some(db), false) = (geo, a.countries.is_empty()) {
        let approved = |code: &[u8; 2]| a.countries.binary_search(code).is_ok();
        v4.extend(db.networks_v4().iter().filter(|(_, c)| approved(c)).map(|(n, _)| *n));
        v6.extend(
            db.networks_v6().iter().filter(|(n, c)| approved(c) && !inside_v4_mapped(n)).map(|(n, _)| *n),
        );
    }
    const SINKS: &str = "approved sink";
    Ok(Some(CompiledBudgets {
        config,
        sink4: finish(Ipv4Net::aggregate(&v4), SINKS)?,
        sink6: finish(Ipv6Net::aggregate(&v6), SINKS)?,
    }))
}
