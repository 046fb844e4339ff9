//! Unified line diffs of policy documents (the API's `policies/diff` and the evidence pack).

/// A unified line diff (empty when the texts are equal).
pub fn line_diff(old: &str, new: &str, old_name: &str, new_name: &str) -> String {
    if old == new {
        return String::new();
    }
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(old_name, new_name)
        .to_string()
}
