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

pub mod compile;
mod compile_encrypt;
mod compile_geo;
mod compile_lookup;
pub mod countries;
mod destination;
mod diagnostic;
mod evaluate;
mod evaluate_geo;
mod fields;
pub mod geo;
pub mod groups;
mod model;
mod model_exfil;
mod quantities;
mod validate;
mod validate_encryption;
mod validate_exfil;
mod validate_geo;
mod values;
mod yaml_tree;

#[cfg(test)]
mod tests;

pub use compile::{compile, CompileError, Compiled, CompiledFamily};
pub use countries::CountryCode;
pub use destination::{Destination, DestinationError};
pub use diagnostic::{format_diagnostics, load_policy_file, Diagnostic, PolicyFileError};
pub use evaluate::{DecidedBy, Decision};
pub use groups::{shipped_groups, CountryGroup};
pub use model::{
    normalize_addr, normalize_net, Action, ApprovedSinks, Bulk, Checkpoints, ExfilAction, Exfiltration, Mode,
    Policy, PortMatch, Protocol, RawSockets, Region, Rule,
};
pub use validate::{API_VERSION, KIND};
pub use values::MAX_PORT_ENTRIES;

/// Parses and validates a policy document. On failure returns every problem found (YAML syntax
/// errors stop parsing, so a syntax error is reported alone), ordered by line and column.
pub fn parse_policy(src: &str) -> Result<Policy, Vec<Diagnostic>> {
    // A byte order mark may start a YAML stream (editors on Windows write one); the YAML reader
    // would take it for content. Line 1's columns then count from after it, as editors show them.
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    let (root, diagnostics) = yaml_tree::parse_yaml(src)?;
    validate::validate(root.as_ref(), diagnostics)
}
