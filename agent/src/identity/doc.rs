//! Reading the identity files (YAML, or JSON, which is YAML) field by field, collecting every
//! problem with the path of the field it concerns instead of stopping at the first.
use yaml_rust2::{Yaml, YamlLoader};

/// The problems found so far, each "`field.path`: what is wrong".
#[derive(Debug, Default)]
pub(crate) struct Problems(pub Vec<String>);

impl Problems {
    pub fn add(&mut self, at: &str, message: impl std::fmt::Display) {
        let at = if at.is_empty() { "(document)" } else { at };
        self.0.push(format!("{at}: {message}"));
    }

    /// `value`, or the problems if there are any.
    pub fn into_result<T>(self, value: T) -> Result<T, Vec<String>> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self.0)
        }
    }
}

/// `at.key` (or `key` at the top).
pub(crate) fn join(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_owned()
    } else {
        format!("{at}.{key}")
    }
}

/// The single document in `text`.
pub(crate) fn parse(text: &str) -> Result<Yaml, Vec<String>> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| vec![format!("not valid YAML: {e}")])?;
    match <[Yaml; 1]>::try_from(docs) {
        Ok([doc]) => Ok(doc),
        Err(docs) => Err(vec![format!("expected exactly one YAML document, found {}", docs.len())]),
    }
}

/// What a node is, for messages.
pub(crate) fn describe(node: &Yaml) -> &'static str {
    match node {
        Yaml::Null => "null",
        Yaml::Hash(_) => "a mapping",
        Yaml::Array(_) => "a sequence",
        Yaml::Alias(_) | Yaml::BadValue => "an unsupported value",
        _ => "a scalar",
    }
}

/// The entries of the mapping `node`, keeping only the keys in `allowed` (the others are
/// reported). `None` (and a problem) if `node` is not a mapping.
pub(crate) fn fields<'a>(
    node: &'a Yaml,
    at: &str,
    allowed: &[&str],
    problems: &mut Problems,
) -> Option<Vec<(&'a str, &'a Yaml)>> {
    let Yaml::Hash(map) = node else {
        problems.add(at, format_args!("expected a mapping, found {}", describe(node)));
        return None;
    };
    let mut out = Vec::with_capacity(map.len());
    for (key, value) in map {
        match key.as_str() {
            Some(k) if allowed.contains(&k) => out.push((k, value)),
            Some(k) => problems
                .add(&join(at, k), format_args!("unknown field (expected one of: {})", allowed.join(", "))),
            None => problems.add(at, format_args!("keys must be strings, found {}", describe(key))),
        }
    }
    Some(out)
}

/// The value of `key` among `fields`.
pub(crate) fn get<'a>(fields: &[(&str, &'a Yaml)], key: &str) -> Option<&'a Yaml> {
    fields.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

/// The non-empty string at `key` (reported if missing, when `required`, or not a string).
pub(crate) fn string(
    fields: &[(&str, &Yaml)],
    at: &str,
    key: &str,
    required: bool,
    problems: &mut Problems,
) -> Option<String> {
    match get(fields, key) {
        None | Some(Yaml::Null) if required => {
            problems.add(&join(at, key), "required");
            None
        }
        None | Some(Yaml::Null) => None,
        Some(Yaml::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        Some(Yaml::String(_)) => {
            problems.add(&join(at, key), "must not be empty");
            None
        }
        Some(other) => {
            problems.add(&join(at, key), format_args!("expected a string, found {}", describe(other)));
            None
        }
    }
}

/// A label value: a string, or a number or boolean written without quotes (kept as written).
pub(crate) fn scalar_text(node: &Yaml) -> Option<String> {
    match node {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Checks `apiVersion` and `kind` among `fields`.
pub(crate) fn header(fields: &[(&str, &Yaml)], api_version: &str, kind: &str, problems: &mut Problems) {
    for (key, want) in [("apiVersion", api_version), ("kind", kind)] {
        if let Some(got) = string(fields, "", key, true, problems) {
            if got != want {
                problems.add(key, format_args!("expected `{want}`, found `{got}`"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_document_only() {
        let err = parse("a: 1\n---\nb: 2\n").expect_err("two documents must be refused");
        assert_eq!(err, ["expected exactly one YAML document, found 2"]);
        let err = parse("a: [1\n").expect_err("bad YAML must be refused");
        assert!(err[0].starts_with("not valid YAML"), "{err:?}");
    }

    #[test]
    fn unknown_and_mistyped_fields_are_all_reported() {
        let doc = parse("file: 3\nfiel: x\nother: y\n").expect("valid YAML");
        let mut problems = Problems::default();
        let f = fields(&doc, "sources.static", &["file"], &mut problems).expect("a mapping");
        assert_eq!(string(&f, "sources.static", "file", true, &mut problems), None);
        assert_eq!(
            problems.0,
            [
                "sources.static.fiel: unknown field (expected one of: file)",
                "sources.static.other: unknown field (expected one of: file)",
                "sources.static.file: expected a string, found a scalar",
            ]
        );
    }
}
