//! The vocabulary of a rule: actions, mode, protocols, port entries and the rule itself.

use std::fmt;

use ipnet::IpNet;
use serde::Serialize;

use super::dns::Fqdn;
use super::selector::Selector;
use crate::countries::{serialize_codes, CountryCode};

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

/// One `spec.egress` or `spec.ingress` entry. An egress rule's `cidrs`/`countries` are
/// destinations (`to`), an ingress rule's are sources (`from`) and its `ports` the workload's
/// own ports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rule {
    /// 1-based index in `spec.egress`, or in `spec.ingress` for an ingress rule (0 is reserved
    /// for the default action).
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
    /// `to.fqdns` (allow rules only): destinations whose addresses the workload was answered
    /// for these names by a pinned resolver. Sorted, deduplicated.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fqdns: Vec<Fqdn>,
    /// `to.countryGroups` as written (already expanded into `countries`; kept for display).
    pub country_groups: Vec<String>,
    /// Empty = all ports, any protocol.
    pub ports: Vec<PortMatch>,
    /// `encryption: required`: traffic this (allow) rule decides must leave inside WireGuard.
    /// Always false for deny rules (validation rejects it there) and for ingress rules.
    pub encryption_required: bool,
    /// Ingress only (`from.peers: true`): connections from the peer nodes (`spec.peers`) match.
    /// Always false for egress rules.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub peers: bool,
    /// Ingress only (`from.workloads`): connections from the addresses of the workloads this
    /// selector matches (resolved when the rules are compiled) match. Always `None` for egress
    /// rules.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workloads: Option<Selector>,
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
