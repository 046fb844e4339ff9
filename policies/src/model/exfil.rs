//! The validated `spec.exfiltration` section: weight-exfiltration detection rules.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use serde::Serialize;

use super::budget::Budgets;
use super::dns::Fqdn;
use crate::countries::{country_str, serialize_codes, CountryCode};
use crate::prefix::{normalize_addr, normalize_net};
use crate::quantities::{format_bytes, format_duration, format_percent};

/// `spec.exfiltration`. At least one of `bulk`, `checkpoints`, `budgets` and `rateLimit` is set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Exfiltration {
    /// Destinations transfers to which are never reported.
    pub approved: ApprovedSinks,
    /// Bulk transfers: bytes to one destination (per cgroup) within a window.
    pub bulk: Option<Bulk>,
    /// Transfers matching the size of a recent checkpoint file.
    pub checkpoints: Option<Checkpoints>,
    pub action: ExfilAction,
    /// How long a block lasts, in seconds (`blockFor`; default 1h). Only meaningful with
    /// [`ExfilAction::Block`].
    pub block_for_secs: u64,
    /// Byte budgets the kernel enforces per workload (`budgets`).
    pub budgets: Option<Budgets>,
    /// `rateLimit`: the workload's throughput cap to non-approved destinations, bytes per second.
    pub rate_limit: Option<u64>,
}

/// `spec.exfiltration.approvedSinks`: destinations transfers may go to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ApprovedSinks {
    /// Network-form CIDRs (IPv4-mapped IPv6 already converted to IPv4), sorted, deduplicated.
    pub cidrs: Vec<IpNet>,
    /// `countries` plus the members of `countryGroups`, sorted, deduplicated. Serialized as
    /// `["DE", ...]`.
    #[serde(serialize_with = "serialize_codes")]
    pub countries: Vec<CountryCode>,
    /// `peers: true`: the peer nodes (`spec.peers`) are approved.
    pub peers: bool,
    /// Names (exact or `*.` wildcards) whose addresses, as answered to the workload by its
    /// pinned resolvers, are approved while the learned address lives. Sorted, deduplicated.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fqdns: Vec<Fqdn>,
}

/// `spec.exfiltration.bulk`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Bulk {
    /// Threshold: more than this many bytes to one destination within the window. Above 0.
    pub bytes: u64,
    /// The window, in seconds: 1 to [`Bulk::MAX_WINDOW_SECS`].
    pub window_secs: u64,
}

/// `spec.exfiltration.checkpoints`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Checkpoints {
    /// Absolute directories holding checkpoints, without trailing `/`, deduplicated, in the
    /// order given.
    pub paths: Vec<String>,
    /// File-name globs (`*`: any run of characters, `?`: one character), deduplicated, in the
    /// order given; [`Checkpoints::DEFAULT_PATTERNS`] when not given.
    pub patterns: Vec<String>,
    /// How close a transfer must come to a checkpoint's size, in basis points (hundredths of a
    /// percent: 200 = 2%): 1 to [`Checkpoints::MAX_TOLERANCE_BP`].
    pub tolerance_bp: u32,
}

/// What happens when a rule matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExfilAction {
    /// Report only.
    Alert,
    /// Report and block the destination for the cgroup for `blockFor`.
    Block,
}

impl Exfiltration {
    /// `blockFor` when not given: 1h.
    pub const DEFAULT_BLOCK_FOR_SECS: u64 = 3_600;
    /// The longest `blockFor`: 7d.
    pub const MAX_BLOCK_FOR_SECS: u64 = 7 * 86_400;

    /// How long a block lasts.
    pub fn block_for(&self) -> Duration {
        Duration::from_secs(self.block_for_secs)
    }
}

impl Bulk {
    /// The longest window: 24h.
    pub const MAX_WINDOW_SECS: u64 = 86_400;

    /// The window.
    pub fn window(&self) -> Duration {
        Duration::from_secs(self.window_secs)
    }
}

impl Checkpoints {
    /// `patterns` when not given.
    pub const DEFAULT_PATTERNS: [&'static str; 6] =
        ["*.safetensors", "*.pt", "*.pth", "*.ckpt", "*.bin", "*.gguf"];
    /// `tolerance` when not given: 2%.
    pub const DEFAULT_TOLERANCE_BP: u32 = 200;
    /// The largest `tolerance`: 50%.
    pub const MAX_TOLERANCE_BP: u32 = 5_000;

    /// True if `file_name` (a name, without directories) matches one of the patterns.
    /// Matching is case-sensitive; `*` matches any run of characters (also empty), `?` exactly
    /// one character, everything else itself.
    pub fn matches_name(&self, file_name: &str) -> bool {
        self.patterns.iter().any(|p| glob_match(p, file_name))
    }

    /// The tolerance as a fraction (2% = 0.02).
    pub fn tolerance(&self) -> f64 {
        f64::from(self.tolerance_bp) / 10_000.0
    }
}

impl ApprovedSinks {
    /// True if transfers to `addr` are approved: it is in one of the CIDRs, its `country` (as
    /// the geo-IP database gives it; `None` = unknown) is approved, or `peers` is set and it is
    /// in one of `peer_cidrs` (normally `Policy::peers`). IPv4-mapped IPv6 addresses are
    /// treated as IPv4. `fqdns` are not judged here: whether an address was answered for one
    /// of them is the kernel's learned set (`RF_LEARNED`), which the agent asks separately.
    pub fn approves(&self, addr: IpAddr, country: Option<CountryCode>, peer_cidrs: &[IpNet]) -> bool {
        let addr = normalize_addr(addr);
        self.cidrs.iter().any(|net| net.contains(&addr))
            || country.is_some_and(|c| self.countries.contains(&c))
            || (self.peers && peer_cidrs.iter().any(|net| normalize_net(*net).contains(&addr)))
    }

    /// True if nothing is approved.
    pub fn is_empty(&self) -> bool {
        self.cidrs.is_empty() && self.countries.is_empty() && !self.peers && self.fqdns.is_empty()
    }
}

impl ExfilAction {
    /// `"alert"` or `"block"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ExfilAction::Alert => "alert",
            ExfilAction::Block => "block",
        }
    }
}

impl fmt::Display for ExfilAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line summarizing the section, e.g. `bulk: more than 2GiB to one destination within 10m;
/// checkpoints: *.safetensors, *.pt in /data/ckpt (tolerance 2%); approved: 198.51.100.0/24,
/// DE, peers; action: block for 1h`.
impl fmt::Display for Exfiltration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(b) = &self.bulk {
            parts.push(format!(
                "bulk: more than {} to one destination within {}",
                format_bytes(b.bytes),
                format_duration(b.window_secs)
            ));
        }
        if let Some(c) = &self.checkpoints {
            parts.push(format!(
                "checkpoints: {} in {} (tolerance {})",
                c.patterns.join(", "),
                c.paths.join(", "),
                format_percent(c.tolerance_bp)
            ));
        }
        if let Some(b) = &self.budgets {
            parts.push(format!("budgets: {b}"));
        }
        if let Some(r) = self.rate_limit {
            parts.push(format!("rate limit: {}/s", format_bytes(r)));
        }
        let a = &self.approved;
        let mut approved: Vec<String> = a.cidrs.iter().map(ToString::to_string).collect();
        approved.extend(a.countries.iter().map(|c| country_str(c).to_owned()));
        if a.peers {
            approved.push("peers".to_owned());
        }
        if approved.is_empty() {
            approved.push("none".to_owned());
        }
        parts.push(format!("approved: {}", approved.join(", ")));
        match self.action {
            ExfilAction::Alert => parts.push("action: alert".to_owned()),
            ExfilAction::Block => {
                parts.push(format!("action: block for {}", format_duration(self.block_for_secs)))
            }
        }
        f.write_str(&parts.join("; "))
    }
}

/// Glob match of the whole `text`: `*` matches any run of characters (also empty), `?` exactly
/// one character, any other character itself. Linear backtracking to the last `*`.
pub(crate) fn glob_match(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    let (mut p, mut t) = (0, 0);
    // After a `*`: the pattern position following it and the text position it matched up to.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p + 1, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                // Let the last `*` swallow one more character and retry.
                Some((after, matched)) => {
                    star = Some((after, matched + 1));
                    p = after;
                    t = matched + 1;
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}
