//! Ringfence policy language: parse and validate `EgressPolicy` YAML documents, evaluate them
//! (the reference semantics used by `ringfence policy explain`), and compile them into the
//! prefix tries and match lists the eBPF programs read.
//!
//! ```
//! let policy = ringfence_policy::parse_policy(
//!     "apiVersion: ringfence.dev/v1\nkind: EgressPolicy\nmetadata: {name: demo}\n\
//!      spec:\n  defaultAction: deny\n  egress:\n    - {name: web, action: allow, to: {cidrs: [198.51.100.0/24]}}\n",
//! ).unwrap();
//! let decision = policy.evaluate(&"198.51.100.7:443/tcp".parse().unwrap());
//! assert_eq!(decision.action, ringfence_policy::Action::Allow);
//! assert_eq!(decision.rule, Some(1));
//! ```
//!
//! Modules import one another in one direction only (`cargo xtask cycles policies/src` checks
//! it): `load` uses `validate`, which uses `model`; `evaluate` and `compile` use `model` and
//! `geo`; `workloads` (which policy enforces a workload, and overlapping selectors) uses
//! `model`; and at the bottom the leaves: `yaml_tree`, `diagnostic` and `fields` (parsing),
//! `countries`, `prefix` (address and prefix arithmetic), `quantities`, `destination`.

pub mod compile;
pub mod countries;
mod destination;
mod diagnostic;
mod evaluate;
mod fields;
pub mod geo;
mod load;
mod model;
mod prefix;
mod quantities;
mod validate;
mod workloads;
mod yaml_tree;

#[cfg(test)]
mod tests;

pub use compile::{compile, compile_ingress, CompileError, Compiled, CompiledFamily, CompiledName};
pub use countries::CountryCode;
pub use destination::{Destination, DestinationError};
pub use diagnostic::{format_diagnostics, Diagnostic};
pub use evaluate::{DecidedBy, Decision};
pub use load::{load_policy_file, parse_policy, PolicyFileError};
pub use model::{
    wire_form, Action, ApprovedSinks, Budget, BudgetAmount, Budgets, Bulk, Checkpoints, Dns, ExfilAction,
    Exfiltration, Fqdn, Mode, Policy, PortMatch, Protocol, RawSockets, Region, Rule, Selector,
};
pub use prefix::{normalize_addr, normalize_net};
pub use validate::groups::{self, shipped_groups, CountryGroup};
pub use validate::{API_VERSION, KIND, MAX_PORT_ENTRIES};
pub use workloads::{policy_for, selector_conflicts, AmbiguousPolicy, SelectorConflict};
