//! The compiled policy as the kernel reads it.
//!
//! Verdict for a destination (address, port, protocol): walk the deny trie from the longest
//! matching prefix to shorter ones; the first prefix whose [`MatchList`] has an item matching the
//! port and protocol decides "deny". If none does, do the same with the allow trie. If neither
//! decides, the slot's default action applies. This gives: deny beats allow, allow beats the
//! default, and within one action the longest matching prefix wins.

/// Action values (`PolicyConfig::default_action`). Zero is deny: a zeroed config fails closed.
pub const ACTION_DENY: u32 = 0;
pub const ACTION_ALLOW: u32 = 1;

/// Mode values (`PolicyConfig::mode`).
pub const MODE_ENFORCE: u32 = 0;
pub const MODE_AUDIT: u32 = 1;

/// Protocol values in [`MatchItem::proto`]; TCP and UDP use their IP protocol numbers.
pub const PROTO_ANY: u32 = 0;
pub const PROTO_TCP: u32 = 6;
pub const PROTO_UDP: u32 = 17;

/// Rule id reported when the default action decided.
pub const RULE_DEFAULT: u32 = 0;

/// Items per [`MatchList`].
pub const MAX_ITEMS: usize = 16;
/// Nested prefixes the kernel walks per trie before giving up on that trie.
pub const MAX_DEPTH: u32 = 16;

/// Value of every LPM trie entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct PrefixEntry {
    /// The prefix length of this entry, so the kernel can continue with shorter prefixes.
    pub prefix_len: u32,
    /// Index into the slot's list array.
    pub list_id: u32,
}

/// One port range with a protocol, belonging to a rule.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct MatchItem {
    pub port_lo: u16,
    pub port_hi: u16,
    pub proto: u32,
    /// 1-based rule index in the policy.
    pub rule_id: u32,
}

impl MatchItem {
    #[inline(always)]
    pub fn matches(&self, port: u16, proto: u32) -> bool {
        (self.proto == PROTO_ANY || self.proto == proto) && port >= self.port_lo && port <= self.port_hi
    }
}

/// All (port range, protocol, rule) items of the rules of one action on one exact prefix.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct MatchList {
    pub len: u32,
    pub items: [MatchItem; MAX_ITEMS],
}

impl MatchList {
    /// The rule id of the first item matching `port`/`proto`.
    #[inline(always)]
    pub fn find(&self, port: u16, proto: u32) -> Option<u32> {
        let n = self.len as usize;
        for i in 0..MAX_ITEMS {
            if i >= n {
                break;
            }
            let item = &self.items[i];
            if item.matches(port, proto) {
                return Some(item.rule_id);
            }
        }
        None
    }
}

/// Per-slot settings.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PolicyConfig {
    pub default_action: u32,
    pub mode: u32,
    /// Increases with every policy the agent loads; reported in events.
    pub generation: u32,
    pub _reserved: u32,
}

#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::PrefixEntry {}
    unsafe impl aya::Pod for super::MatchItem {}
    unsafe impl aya::Pod for super::MatchList {}
    unsafe impl aya::Pod for super::PolicyConfig {}
    unsafe impl aya::Pod for super::super::Event {}
}
