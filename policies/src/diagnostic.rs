//! Diagnostics: problems found in a document, with the source position of the YAML node.

use std::fmt;
use std::path::Path;

/// One problem found in a policy document, with the 1-based line and column of the offending
/// YAML node.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Human-readable description, without position or severity.
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic at `line`:`column` (both 1-based).
    pub fn new(line: usize, column: usize, message: impl Into<String>) -> Self {
        Diagnostic { line, column, message: message.into() }
    }
}

/// Formats as `LINE:COL: error: MESSAGE`.
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: error: {}", self.line, self.column, self.message)
    }
}

/// One `PATH:LINE:COL: error: MESSAGE` line per diagnostic, joined by newlines.
pub fn format_diagnostics(path: &Path, diagnostics: &[Diagnostic]) -> String {
    diagnostics.iter().map(|d| format!("{}:{d}", path.display())).collect::<Vec<_>>().join("\n")
}
