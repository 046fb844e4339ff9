//! The self-test's verdict, sans-IO: what was observed goes in, pass or fail with the reason
//! comes out. Pass means the kernel detected the crossing (the budget counter is marked spent),
//! blocked the transfer (the client stalled or was refused), and let at most
//! [`MAX_PAST_BUDGET`] bytes past the budget reach the sink.
use serde::Serialize;

/// The bound on what leaves past a budget.
pub const MAX_PAST_BUDGET: i64 = 256 << 10;

/// What one run saw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// Why the test could not run (hooks detached, maps missing, ...), if so.
    pub setup_error: Option<String>,
    pub budget: u64,
    /// Bytes the throwaway sink received.
    pub received: u64,
    /// The kernel's counter for (throwaway workload, sink) is marked spent.
    pub exhausted: bool,
    /// The client could not send everything it tried (stalled or refused).
    pub client_stopped: bool,
    /// From the transfer's start to the counter marked spent, and from the sink's last byte to
    /// that observation (milliseconds).
    pub blocked_after_ms: Option<f64>,
    pub latency_ms: Option<f64>,
}

/// The result, as printed and reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SelftestResult {
    pub test: &'static str,
    pub passed: bool,
    pub detected: bool,
    pub blocked: bool,
    pub budget: u64,
    pub received: u64,
    pub bytes_past_budget: i64,
    pub blocked_after_ms: Option<f64>,
    pub latency_ms: Option<f64>,
    /// Why it failed (`None` when it passed).
    pub reason: Option<String>,
}

/// Judges one run.
pub fn judge(o: &Observed) -> SelftestResult {
    let past = o.received as i64 - o.budget as i64;
    let reason = if let Some(e) = &o.setup_error {
        Some(e.clone())
    } else if !o.exhausted {
        Some(format!("the kernel never marked the budget spent ({} bytes reached the sink, budget {}): are the cgroup hooks attached?", o.received, o.budget))
    } else if !o.client_stopped {
        Some("the transfer was not stopped: the client sent everything".to_owned())
    } else if past > MAX_PAST_BUDGET {
        Some(format!("{past} bytes past the budget (at most {MAX_PAST_BUDGET})"))
    } else {
        None
    };
    SelftestResult {
        test: "exfil",
        passed: reason.is_none(),
        detected: o.exhausted,
        blocked: o.client_stopped && o.exhausted,
        budget: o.budget,
        received: o.received,
        bytes_past_budget: past,
        blocked_after_ms: o.blocked_after_ms,
        latency_ms: o.latency_ms,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stopped() -> Observed {
        Observed {
            budget: 1 << 20,
            received: (1 << 20) - 4000,
            exhausted: true,
            client_stopped: true,
            blocked_after_ms: Some(30.0),
            latency_ms: Some(2.0),
            setup_error: None,
        }
    }

    #[test]
    fn a_stopped_transfer_passes_and_everything_else_says_why_not() {
        let r = judge(&stopped());
        assert!(r.passed && r.detected && r.blocked && r.reason.is_none(), "{r:?}");
        assert_eq!(r.bytes_past_budget, -4000);
        let undetected = judge(&Observed { exhausted: false, received: 8 << 20, ..stopped() });
        assert!(!undetected.passed && undetected.reason.unwrap().contains("hooks attached"));
        let leaky = judge(&Observed { received: (1 << 20) + (300 << 10), ..stopped() });
        assert!(leaky.reason.unwrap().contains("past the budget"));
        let unblocked = judge(&Observed { client_stopped: false, ..stopped() });
        assert!(!unblocked.passed && !unblocked.blocked);
        let detached = judge(&Observed { setup_error: Some("hooks detached".into()), ..Observed::default() });
        assert_eq!(detached.reason.as_deref(), Some("hooks detached"));
    }
}
