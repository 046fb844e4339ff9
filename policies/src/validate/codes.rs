//! Country codes in a document: one code, and non-empty lists of codes, with hints for
//! lowercase codes and the non-ISO codes people reach for.

use crate::countries::{parse_country, CountryCode};
use crate::diagnostic::Diagnostic;
use crate::fields::{non_empty_sequence, string};
use crate::yaml_tree::Node;

/// Common mistakes: non-ISO codes people reach for, with the ISO code meant.
const ALIASES: [(&str, &str); 2] = [("UK", "GB"), ("EL", "GR")];

/// One country code. Reports lowercase input and codes that are not assigned.
fn country(node: &Node, context: &str, diags: &mut Vec<Diagnostic>) -> Option<CountryCode> {
    let text = string(node, &format!("a country code {context}"), diags)?;
    if let Some(code) = parse_country(text) {
        return Some(code);
    }
    let upper = text.to_ascii_uppercase();
    let message = if upper != text && parse_country(&upper).is_some() {
        format!(
            "invalid country code \"{text}\" {context}: country codes must be uppercase ISO 3166-1 alpha-2 codes; did you mean \"{upper}\"?"
        )
    } else if let Some((_, iso)) = ALIASES.iter().find(|(alias, _)| *alias == upper) {
        format!(
            "unknown country code \"{text}\" {context}: not an officially assigned ISO 3166-1 alpha-2 code; did you mean \"{iso}\"?"
        )
    } else {
        format!(
            "unknown country code \"{text}\" {context}: not an officially assigned ISO 3166-1 alpha-2 code (two uppercase letters, e.g. DE, US, JP)"
        )
    };
    diags.push(node.error(message));
    None
}

/// A non-empty sequence of country codes (`what` names the field, e.g. `"to.countries"`).
/// Duplicates are accepted and removed; the result is sorted.
pub(crate) fn country_list(
    node: &Node,
    what: &str,
    context: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<Vec<CountryCode>> {
    let items = non_empty_sequence(node, what, context, "", diags)?;
    let before = diags.len();
    let mut codes: Vec<CountryCode> = items.iter().filter_map(|c| country(c, context, diags)).collect();
    codes.sort_unstable();
    codes.dedup();
    (diags.len() == before).then_some(codes)
}
