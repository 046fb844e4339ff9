//! What can go wrong loading identity configuration and talking to the Kubernetes API.
use std::path::PathBuf;

/// An identity source could not be set up, or a file it reads is invalid.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// A file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file was read but is invalid; every problem found, one per entry.
    #[error("{}: {}", path.display(), list(problems))]
    Invalid { path: PathBuf, problems: Vec<String> },
    /// The Kubernetes API could not be reached or answered something unusable.
    #[error("kubernetes API: {0}")]
    Kubernetes(String),
}

fn list(problems: &[String]) -> String {
    match problems {
        [one] => one.clone(),
        many => {
            let mut text = format!("{} problems:", many.len());
            for p in many {
                text.push_str("\n  - ");
                text.push_str(p);
            }
            text
        }
    }
}

/// Reads `path` as UTF-8 text.
pub(crate) fn read_text(path: &std::path::Path) -> Result<String, IdentityError> {
    std::fs::read_to_string(path).map_err(|source| IdentityError::Read { path: path.to_owned(), source })
}

/// Reads the file at `path` and parses it with `parse`, naming the file with every problem.
pub(crate) fn load_file<T>(
    path: &std::path::Path,
    parse: impl FnOnce(&str) -> Result<T, Vec<String>>,
) -> Result<T, IdentityError> {
    parse(&read_text(path)?).map_err(|problems| IdentityError::Invalid { path: path.to_owned(), problems })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_lists_every_problem() {
        let one = IdentityError::Invalid { path: "/etc/x.yaml".into(), problems: vec!["a: bad".into()] };
        assert_eq!(one.to_string(), "/etc/x.yaml: a: bad");
        let two =
            IdentityError::Invalid { path: "/etc/x.yaml".into(), problems: vec!["a".into(), "b".into()] };
        assert_eq!(two.to_string(), "/etc/x.yaml: 2 problems:\n  - a\n  - b");
    }
}
