//! Diagnostics (errors with a source position) and loading a policy from a file.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::model::Policy;

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

/// Why [`load_policy_file`] failed.
#[derive(Debug, thiserror::Error)]
pub enum PolicyFileError {
    /// The file could not be read.
    #[error("{}: cannot read policy: {source}", path.display())]
    Io {
        /// The file that was read.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file was read but is not a valid policy. Displays one line per diagnostic,
    /// `PATH:LINE:COL: error: MESSAGE`.
    #[error("{}", format_diagnostics(path, diagnostics))]
    Invalid {
        /// The file that was read.
        path: PathBuf,
        /// Every problem found, ordered by position.
        diagnostics: Vec<Diagnostic>,
    },
}

/// One `PATH:LINE:COL: error: MESSAGE` line per diagnostic, joined by newlines.
pub fn format_diagnostics(path: &Path, diagnostics: &[Diagnostic]) -> String {
    diagnostics.iter().map(|d| format!("{}:{d}", path.display())).collect::<Vec<_>>().join("\n")
}

/// Reads and parses the policy at `path` (see [`crate::parse_policy`]).
pub fn load_policy_file(path: &Path) -> Result<Policy, PolicyFileError> {
    let src = std::fs::read_to_string(path)
        .map_err(|source| PolicyFileError::Io { path: path.to_path_buf(), source })?;
    crate::parse_policy(&src)
        .map_err(|diagnostics| PolicyFileError::Invalid { path: path.to_path_buf(), diagnostics })
}
