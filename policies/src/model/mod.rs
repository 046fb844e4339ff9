//! The validated policy model: what [`crate::parse_policy`] returns and what the compiler and
//! the evaluator read.
//!
//! `rule` holds the vocabulary of a rule, `policy` the policy around the rules, `exfil` the
//! `spec.exfiltration` section; policy uses the other two, which use neither each other nor it.

mod exfil;
mod policy;
mod rule;

pub use exfil::{ApprovedSinks, Bulk, Checkpoints, ExfilAction, Exfiltration};
pub use policy::{Policy, Region};
pub use rule::{Action, Mode, PortMatch, Protocol, RawSockets, Rule};

#[cfg(test)]
pub(crate) use exfil::glob_match;
