//! Domain names as egress targets: a rule's `to.fqdns` patterns and the policy's `spec.dns`.

use std::net::IpAddr;

use ringfence_common::{name_hash, NAME_EXACT, NAME_WILDCARD};
use serde::Serialize;

/// `spec.dns`: where a policy's workloads may resolve names, and how long learned addresses
/// live.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Dns {
    /// The only servers the workloads may query (UDP and TCP port 53); only their answers are
    /// learned. Empty: no resolver is pinned (no answer is learned, and all DNS is refused
    /// when the policy names domains: validation requires resolvers then).
    pub resolvers: Vec<IpAddr>,
    /// `minTTL` (seconds): a learned address lives at least this long, whatever its TTL.
    pub min_ttl_secs: u32,
}

impl Default for Dns {
    fn default() -> Self {
        Self { resolvers: Vec::new(), min_ttl_secs: Dns::DEFAULT_MIN_TTL_SECS }
    }
}

impl Dns {
    pub const DEFAULT_MIN_TTL_SECS: u32 = ringfence_common::DEFAULT_TTL_FLOOR;
    pub const MAX_MIN_TTL_SECS: u32 = 86_400;
}

/// One `to.fqdns` entry: `name.example` (that name only) or `*.name.example` (every name with
/// one label or more in front of `name.example`, not `name.example` itself). Lowercase,
/// without a trailing dot.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Fqdn(pub String);

impl Fqdn {
    /// True for `*.suffix`.
    pub fn is_wildcard(&self) -> bool {
        self.0.starts_with("*.")
    }

    /// The name without `*.`.
    pub fn base(&self) -> &str {
        self.0.strip_prefix("*.").unwrap_or(&self.0)
    }

    /// The kernel's key of the pattern: (`NAME_EXACT` or `NAME_WILDCARD`, hash of the base in
    /// wire form).
    pub fn kernel_key(&self) -> (u32, u64) {
        let kind = if self.is_wildcard() { NAME_WILDCARD } else { NAME_EXACT };
        (kind, name_hash(&wire_form(self.base())))
    }

    /// True if every name this pattern matches is also matched by `other` (the same pattern, or
    /// `other` is a wildcard over this pattern's base: `*.hf.co` covers `cdn.hf.co` and
    /// `*.eu.hf.co`, not `hf.co`). The kernel learns an answer under the longest pattern that
    /// matches the question, so that pattern's entry carries what every covering pattern allows.
    pub fn covered_by(&self, other: &Fqdn) -> bool {
        self == other || (other.is_wildcard() && other.matches(self.base()))
    }

    /// True if the pattern matches `name` (any case, an optional trailing dot).
    pub fn matches(&self, name: &str) -> bool {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        match self.0.strip_prefix("*.") {
            Some(base) => {
                name.len() > base.len() + 1 && name.ends_with(base) && {
                    let cut = name.len() - base.len();
                    name.as_bytes()[cut - 1] == b'.'
                }
            }
            None => name == self.0,
        }
    }
}

impl std::fmt::Display for Fqdn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `name` (dot-separated labels) in DNS wire form, lowercased.
pub fn wire_form(name: &str) -> Vec<u8> {
    let mut w = Vec::with_capacity(name.len() + 2);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        w.push(label.len() as u8);
        w.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
    }
    w.push(0);
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_need_a_label_in_front() {
        let w = Fqdn("*.hf.co".into());
        assert!(w.matches("cdn-lfs.HF.co."));
        assert!(w.matches("a.b.hf.co"));
        assert!(!w.matches("hf.co"));
        assert!(!w.matches("xhf.co"));
        let e = Fqdn("pypi.org".into());
        assert!(e.matches("PyPI.org"));
        assert!(Fqdn("cdn.hf.co".into()).covered_by(&w));
        assert!(Fqdn("*.eu.hf.co".into()).covered_by(&w));
        assert!(w.covered_by(&w));
        assert!(!Fqdn("hf.co".into()).covered_by(&w));
        assert!(!w.covered_by(&Fqdn("cdn.hf.co".into())));
        assert!(!Fqdn("*.hf.co".into()).covered_by(&Fqdn("*.eu.hf.co".into())));
        assert!(!e.matches("files.pypi.org"));
        assert_eq!(wire_form("Ab.c"), b"\x02ab\x01c\x00");
        assert_ne!(w.kernel_key(), Fqdn("hf.co".into()).kernel_key());
        assert_eq!(w.kernel_key().1, Fqdn("hf.co".into()).kernel_key().1);
    }
}
