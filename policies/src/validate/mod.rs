//! Validation of a spanned YAML tree into a [`Policy`](crate::Policy), collecting every
//! diagnostic; and the `kind: CountryGroup` documents, including the shipped groups.
//!
//! `document` validates the header, `metadata` and `spec` and hands the parts of `spec` to
//! `rules` (egress and ingress rules, whose `to`/`from` `targets` validates), `encryption`,
//! `exfil` (with `budget`), `selector` (workload selectors), `dns` (`to.fqdns` through `targets`, and
//! `spec.dns`) and `country_groups`. Below them: `values` (CIDRs,
//! ports), `codes` (country codes), `groups` (country group documents and the shipped groups)
//! and `header` (apiVersion/kind and names), which use none of the modules above them.

mod budget;
mod codes;
mod country_groups;
mod dns;
mod document;
mod encryption;
mod exfil;
pub mod groups;
mod header;
mod rules;
mod selector;
mod targets;
mod values;

#[cfg(test)]
pub(crate) use budget::parse_budget;
pub(crate) use document::validate;
pub use header::{API_VERSION, KIND};
pub use values::MAX_PORT_ENTRIES;
