//! Parsing flag values, collecting every problem: durations and http(s) URLs. Shared by the
//! option groups; a leaf.

use std::time::Duration;

/// `text` as a duration (`4h`, `30m`); on error records it and returns zero.
pub fn duration(errors: &mut Vec<String>, flag: &str, text: &str) -> Duration {
    humantime::parse_duration(text).unwrap_or_else(|e| {
        errors.push(format!("--{flag} {text:?}: {e} (expected e.g. 4h, 30m, 10s)"));
        Duration::ZERO
    })
}

/// `text` as an http(s) URL with a host, if given; on error records it and returns `None`.
pub fn http_url(errors: &mut Vec<String>, flag: &str, text: &Option<String>) -> Option<url::Url> {
    let text = text.as_ref()?;
    match url::Url::parse(text) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
        Ok(_) => {
            errors.push(format!("--{flag} {text:?}: expected an http:// or https:// URL with a host"));
            None
        }
        Err(e) => {
            errors.push(format!("--{flag} {text:?}: {e}"));
            None
        }
    }
}
