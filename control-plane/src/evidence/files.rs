//! The files of a pack being built (a leaf the section modules share).

use std::collections::BTreeMap;

use serde::Serialize;

/// The files of a pack being built (path → text).
#[derive(Default)]
pub struct Files(pub BTreeMap<String, String>);

impl Files {
    /// Adds a JSON file (pretty, with a final newline).
    pub fn json(&mut self, path: &str, value: &impl Serialize) {
        let text = serde_json::to_string_pretty(value).expect("evidence serializes") + "\n";
        self.0.insert(path.to_owned(), text);
    }

    /// Adds a text file.
    pub fn text(&mut self, path: &str, text: String) {
        self.0.insert(path.to_owned(), text);
    }
}
