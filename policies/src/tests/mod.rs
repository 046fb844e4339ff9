//! Unit tests of parsing, validation, evaluation and compilation.

mod budgets;
mod compile_tests;
mod cross_check;
mod dns;
mod encryption;
mod examples;
mod exfil_errors;
mod exfiltration;
mod geo_compile;
mod geo_parse;
mod geo_precedence;
mod ingress_compile;
mod ingress_parse;
mod parse_errors;
mod parse_ok;
mod precedence;
mod quantities;
mod workloads;

use crate::{parse_policy, Diagnostic, Policy};

/// A policy document with the given `spec` body (already indented by two spaces).
pub(crate) fn doc(spec: &str) -> String {
    format!("apiVersion: ringfence.dev/v1\nkind: EgressPolicy\nmetadata:\n  name: test\nspec:\n{spec}")
}

pub(crate) fn parse_ok(src: &str) -> Policy {
    match parse_policy(src) {
        Ok(p) => p,
        Err(diags) => panic!("unexpected diagnostics: {diags:#?}\n{src}"),
    }
}

pub(crate) fn parse_err(src: &str) -> Vec<Diagnostic> {
    match parse_policy(src) {
        Ok(p) => panic!("expected errors, parsed {p:#?}"),
        Err(diags) => diags,
    }
}

/// Asserts a diagnostic at `line`:`column` whose message contains `needle`.
pub(crate) fn assert_diag(diags: &[Diagnostic], line: usize, column: usize, needle: &str) {
    assert!(
        diags.iter().any(|d| d.line == line && d.column == column && d.message.contains(needle)),
        "no diagnostic {line}:{column} containing {needle:?} in:\n{}",
        diags.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
    );
}
