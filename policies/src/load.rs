//! Loading a policy: from text ([`parse_policy`]: YAML tree, then validation) or from a file
//! ([`load_policy_file`]).

use std::path::{Path, PathBuf};

use crate::diagnostic::{format_diagnostics, Diagnostic};
use crate::model::Policy;
use crate::{validate, yaml_tree};

/// Parses and validates a policy document. On failure returns every problem found (YAML syntax
/// errors stop parsing, so a syntax error is reported alone), ordered by line and column.
pub fn parse_policy(src: &str) -> Result<Policy, Vec<Diagnostic>> {
    // A byte order mark may start a YAML stream (editors on Windows write one); the YAML reader
    // would take it for content. Line 1's columns then count from after it, as editors show them.
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    let (root, diagnostics) = yaml_tree::parse_yaml(src)?;
    validate::validate(root.as_ref(), diagnostics)
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

/// Reads and parses the policy at `path` (see [`parse_policy`]).
pub fn load_policy_file(path: &Path) -> Result<Policy, PolicyFileError> {
    let src = std::fs::read_to_string(path)
        .map_err(|source| PolicyFileError::Io { path: path.to_path_buf(), source })?;
    parse_policy(&src)
        .map_err(|diagnostics| PolicyFileError::Invalid { path: path.to_path_buf(), diagnostics })
}
