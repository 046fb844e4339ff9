//! The validated policy model.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net};
use serde::Serialize;

use crate::countries::{serialize_codes, CountryCode};
pub use crate::model_exfil::{ApprovedSinks, Bulk, Checkpoints, ExfilAction, Exfiltration};

/// What a rule (or the default) does with a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Deny,
}

/// Whether deny verdicts are enforced or only reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Deny verdicts block the connection.
    Enforce,
    /// Deny verdicts are reported but the connection is allowed.
    Audit,
}

/// Transport protocol of a port entry or a destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    /// In a port entry: TCP and UDP. In a destination: matches only port entries with `any`.
    Any,
    /// ICMP for IPv4 destinations and ICMPv6 for IPv6 ones (echo requests and every other
    /// message). It has no ports: a port entry `{ protocol: icmp }` matches all ICMP.
    Icmp,
}

/// Whether the enforced cgroup may create raw IP sockets (`spec.rawSockets`). Packet (AF_PACKET)
/// and XDP sockets are always refused: no hook inside the node can decide their frames.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RawSockets {
    /// Refused with EPERM and reported (the default).
    #[default]
    Deny,
    /// Allowed; every packet they send is decided by the policy like any other.
    Policy,
}

/// A port range (inclusive, `lo <= hi`, both >= 1) with a protocol; an ICMP entry has no port
/// and spans 0-65535 (ICMP is decided with port 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct PortMatch {
    pub lo: u16,
    pub hi: u16,
    pub protocol: Protocol,
}

/// One `spec.egress` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rule {
    /// 1-based index in `spec.egress` (0 is reserved for the default action).
    pub id: u32,
    pub name: String,
    pub action: Action,
    /// Network-form CIDRs; IPv4-mapped IPv6 CIDRs are already converted to IPv4. May be empty
    /// when the rule names countries.
    pub cidrs: Vec<IpNet>,
    /// Countries the rule applies to: `to.countries` plus the members of `to.countryGroups`,
    /// deduplicated and sorted. Serialized as `["DE", ...]`.
    #[serde(serialize_with = "serialize_codes")]
    pub countries: Vec<CountryCode>,
    /// `to.countryGroups` as written (already expanded into `countries`; kept for display).
    pub country_groups: Vec<String>,
    /// Empty = all ports, any protocol.
    pub ports: Vec<PortMatch>,
    /// `encryption: required`: traffic this (allow) rule decides must leave inside WireGuard.
    /// Always false for deny rules (validation rejects it there).
    pub encryption_required: bool,
}

/// One `spec.regions` entry: where a region's addresses are.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Region {
    /// `countries` plus the members of `countryGroups`, deduplicated and sorted. Serialized as
    /// `["DE", ...]`.
    #[serde(serialize_with = "serialize_codes")]
    pub countries: Vec<CountryCode>,
    /// Network-form CIDRs (IPv4-mapped IPv6 already converted to IPv4).
    pub cidrs: Vec<IpNet>,
}

/// A validated `EgressPolicy`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// `metadata.name`.
    pub name: String,
    pub mode: Mode,
    pub default_action: Action,
    /// In `spec.egress` order; `rules[i].id == i + 1`.
    pub rules: Vec<Rule>,
    /// `spec.unknownCountry`: what happens to addresses the geo-IP database has no country for
    /// (after CIDR rules). `None` = the default action decides them.
    pub unknown_country: Option<Action>,
    /// `spec.peers.cidrs`: peer node addresses; traffic to them must always be encrypted.
    pub peers: Vec<IpNet>,
    /// `spec.regions`, by name.
    pub regions: BTreeMap<String, Region>,
    /// `spec.crossBorder.homeRegion` (a key of `regions`): with it set, traffic to every address
    /// outside the home region must be encrypted.
    pub cross_border: Option<String>,
    /// `spec.exfiltration`: weight-exfiltration detection rules (not compiled into the kernel
    /// tries; the agent applies them to flow counters in user space).
    pub exfiltration: Option<Exfiltration>,
    /// `spec.rawSockets`.
    pub raw_sockets: RawSockets,
}

impl Policy {
    /// The rule with the given 1-based id.
    pub fn rule(&self, id: u32) -> Option<&Rule> {
        let index = usize::try_from(id).ok()?.checked_sub(1)?;
        self.rules.get(index).filter(|r| r.id == id)
    }

    /// True if the policy needs a geo-IP database: a rule names countries (directly or through
    /// a group), `unknownCountry` is set, or `crossBorder` is set and its home region names
    /// countries.
    pub fn references_countries(&self) -> bool {
        self.unknown_country.is_some()
            || self.rules.iter().any(|r| !r.countries.is_empty())
            || self.home_region().is_some_and(|r| !r.countries.is_empty())
    }

    /// Every country the geo-IP database is needed for: those some rule names plus, with
    /// crossBorder, those of the home region; sorted, without duplicates.
    pub fn geo_countries(&self) -> Vec<CountryCode> {
        let mut all = self.countries();
        all.extend(self.home_region().map(|r| r.countries.iter().copied()).into_iter().flatten());
        all.sort_unstable();
        all.dedup();
        all
    }

    /// The home region (`crossBorder.homeRegion`), if `crossBorder` is set.
    pub fn home_region(&self) -> Option<&Region> {
        self.cross_border.as_ref().and_then(|name| self.regions.get(name))
    }

    /// True if any encryption requirement is configured (peers, crossBorder, or a rule with
    /// `encryption: required`).
    pub fn uses_encryption(&self) -> bool {
        !self.peers.is_empty()
            || self.cross_border.is_some()
            || self.rules.iter().any(|r| r.encryption_required)
    }

    /// True if `spec.exfiltration` approves countries, so telling approved destinations apart
    /// needs a geo-IP database in the agent (independent of [`Policy::references_countries`],
    /// which is about the kernel's tries).
    pub fn exfiltration_needs_geo(&self) -> bool {
        self.exfiltration.as_ref().is_some_and(|e| !e.approved.countries.is_empty())
    }

    /// Every country some rule names, sorted, without duplicates.
    pub fn countries(&self) -> Vec<CountryCode> {
        let mut all: Vec<CountryCode> = self.rules.iter().flat_map(|r| r.countries.iter().copied()).collect();
        all.sort_unstable();
        all.dedup();
        all
    }
}

impl Action {
    /// `"allow"` or `"deny"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Deny => "deny",
        }
    }
}

impl Mode {
    /// `"enforce"` or `"audit"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Audit => "audit",
        }
    }
}

impl Protocol {
    /// `"tcp"`, `"udp"`, `"any"` or `"icmp"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Any => "any",
            Protocol::Icmp => "icmp",
        }
    }

    /// The kernel's `PROTO_*` value.
    pub fn to_kernel(self) -> u32 {
        match self {
            Protocol::Tcp => ringfence_common::PROTO_TCP,
            Protocol::Udp => ringfence_common::PROTO_UDP,
            Protocol::Any => ringfence_common::PROTO_ANY,
            Protocol::Icmp => ringfence_common::PROTO_ICMP,
        }
    }
}

impl RawSockets {
    /// `"deny"` or `"policy"`.
    pub fn as_str(self) -> &'static str {
        match self {
            RawSockets::Deny => "deny",
            RawSockets::Policy => "policy",
        }
    }
}

impl PortMatch {
    /// True if `port` is in the range and the protocols agree (`any` in this entry matches TCP
    /// and UDP, and every other protocol that has ports). `None` (no destination port) never
    /// matches a port entry, except that an `icmp` entry matches every ICMP destination.
    pub fn matches(&self, port: Option<u16>, protocol: Protocol) -> bool {
        if self.protocol == Protocol::Icmp || protocol == Protocol::Icmp {
            return self.protocol == protocol;
        }
        let port_ok = port.is_some_and(|p| self.lo <= p && p <= self.hi);
        port_ok && (self.protocol == Protocol::Any || self.protocol == protocol)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `443/tcp`, `8000-8100/any` or `icmp`.
impl fmt::Display for PortMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.protocol == Protocol::Icmp {
            f.write_str("icmp")
        } else if self.lo == self.hi {
            write!(f, "{}/{}", self.lo, self.protocol)
        } else {
            write!(f, "{}-{}/{}", self.lo, self.hi, self.protocol)
        }
    }
}

/// Converts an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) to IPv4; other addresses unchanged.
pub fn normalize_addr(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        IpAddr::V4(_) => addr,
    }
}

/// Converts a network inside `::ffff:0:0/96` to the equivalent IPv4 network
/// (`::ffff:198.51.100.0/120` -> `198.51.100.0/24`); other networks unchanged.
pub fn normalize_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.network().to_ipv4_mapped() {
            Some(v4) => {
                IpNet::V4(Ipv4Net::new(v4, v6.prefix_len() - 96).expect("prefix length is at most 32"))
            }
            None => net,
        },
        _ => net,
    }
}
