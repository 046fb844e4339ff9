//! The validated policy model: what [`crate::parse_policy`] returns and what the compiler and
//! the evaluator read.
//!
//! `rule` holds the vocabulary of a rule, `policy` the policy around the rules, `exfil` the
//! `spec.exfiltration` section (`budget` its kernel-enforced budgets and rate cap), `selector` the workload selectors; policy uses the others,
//! rule uses selector and dns, and exfil, dns and selector use none of them; `ingress` (the ingress rules as a
//! policy of their own) adds to policy and uses the others.

mod budget;
mod dns;
mod exfil;
mod ingress;
mod policy;
mod rule;
mod selector;

pub use budget::{Budget, BudgetAmount, Budgets};
pub use dns::{wire_form, Dns, Fqdn};
pub use exfil::{ApprovedSinks, Bulk, Checkpoints, ExfilAction, Exfiltration};
pub use policy::{Policy, Region};
pub use rule::{Action, Mode, PortMatch, Protocol, RawSockets, Rule};
pub(crate) use selector::format_labels;
pub use selector::Selector;

#[cfg(test)]
pub(crate) use exfil::glob_match;
