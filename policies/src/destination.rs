//! A connection destination to evaluate a policy against.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::Serialize;

use crate::model::Protocol;

/// A destination of an outgoing connection.
///
/// Parsed from `ADDR[:PORT][/tcp|udp|icmp]`: `198.51.100.7:443/tcp`, `198.51.100.7/udp`,
/// `198.51.100.7/icmp` (ICMP has no port), `[2001:db8::1]:443/tcp`, or a bare IPv6 address
/// `2001:db8::1` (a bare IPv6 address never has a port; use brackets to give one). The protocol
/// defaults to `tcp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Destination {
    pub addr: IpAddr,
    /// `None` = no port known: such a destination matches only rules without `ports`
    /// (a rule with port entries never matches it). The kernel model treats this like port 0.
    pub port: Option<u16>,
    /// `Tcp`, `Udp` or `Icmp`. (`Any` matches only port entries whose protocol is `any`.)
    pub protocol: Protocol,
}

/// Why a destination string could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DestinationError {
    #[error(
        "invalid destination address \"{0}\" (expected e.g. 198.51.100.7:443/tcp or [2001:db8::1]:443/udp)"
    )]
    Address(String),
    #[error("invalid destination port \"{0}\" (expected an integer from 1 to 65535)")]
    Port(String),
    #[error("invalid destination protocol \"{0}\" (expected tcp, udp or icmp)")]
    Protocol(String),
    #[error("ICMP has no ports: write {0}/icmp")]
    IcmpPort(String),
}

fn parse_port(text: &str) -> Result<u16, DestinationError> {
    let ok = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| text.parse::<u16>().ok())
        .flatten()
        .filter(|p| *p >= 1)
        .ok_or_else(|| DestinationError::Port(text.to_owned()))
}

fn parse_addr(text: &str) -> Result<IpAddr, DestinationError> {
    text.parse().map_err(|_| DestinationError::Address(text.to_owned()))
}

impl FromStr for Destination {
    type Err = DestinationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (rest, protocol) = match s.rsplit_once('/') {
            Some((rest, "tcp")) => (rest, Protocol::Tcp),
            Some((rest, "udp")) => (rest, Protocol::Udp),
            Some((rest, "icmp")) => (rest, Protocol::Icmp),
            Some((_, other)) => return Err(DestinationError::Protocol(other.to_owned())),
            None => (s, Protocol::Tcp),
        };
        let (addr, port) = if let Some(bracketed) = rest.strip_prefix('[') {
            let (inner, after) =
                bracketed.split_once(']').ok_or_else(|| DestinationError::Address(rest.to_owned()))?;
            let addr = parse_addr(inner)?;
            let port = match after {
                "" => None,
                _ => match after.strip_prefix(':') {
                    Some(p) => Some(parse_port(p)?),
                    None => return Err(DestinationError::Address(rest.to_owned())),
                },
            };
            (addr, port)
        } else if let Ok(addr) = rest.parse::<IpAddr>() {
            (addr, None)
        } else {
            match rest.rsplit_once(':') {
                Some((a, p)) if !a.contains(':') => (parse_addr(a)?, Some(parse_port(p)?)),
                _ => return Err(DestinationError::Address(rest.to_owned())),
            }
        };
        if protocol == Protocol::Icmp && port.is_some() {
            return Err(DestinationError::IcmpPort(addr.to_string()));
        }
        Ok(Destination { addr, port, protocol })
    }
}

/// The canonical `ADDR[:PORT]/PROTO` form (IPv6 with a port in brackets).
impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.addr, self.port) {
            (IpAddr::V6(a), Some(p)) => write!(f, "[{a}]:{p}")?,
            (a, Some(p)) => write!(f, "{a}:{p}")?,
            (a, None) => write!(f, "{a}")?,
        }
        write!(f, "/{}", self.protocol)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Destination {
        s.parse().unwrap()
    }

    #[test]
    fn parses_forms() {
        assert_eq!(
            d("198.51.100.7:443/udp"),
            Destination { addr: "198.51.100.7".parse().unwrap(), port: Some(443), protocol: Protocol::Udp }
        );
        assert_eq!(d("198.51.100.7").port, None);
        assert_eq!(d("198.51.100.7").protocol, Protocol::Tcp);
        assert_eq!(d("198.51.100.7/udp").protocol, Protocol::Udp);
        assert_eq!(d("[2001:db8::1]:443/tcp").port, Some(443));
        assert_eq!(d("[2001:db8::1]").port, None);
        assert_eq!(d("2001:db8::1").addr, "2001:db8::1".parse::<IpAddr>().unwrap());
        assert_eq!(d("2001:db8::1/udp").port, None);
        assert_eq!(d("[2001:db8::1]:53/udp").to_string(), "[2001:db8::1]:53/udp");
        assert_eq!(d("10.0.0.1").to_string(), "10.0.0.1/tcp");
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!("10.0.0.1:0".parse::<Destination>(), Err(DestinationError::Port(_))));
        assert!(matches!("10.0.0.1:70000".parse::<Destination>(), Err(DestinationError::Port(_))));
        assert!(matches!("10.0.0.1:443/sctp".parse::<Destination>(), Err(DestinationError::Protocol(_))));
        assert!(matches!("example.com:443".parse::<Destination>(), Err(DestinationError::Address(_))));
        assert!(matches!("[2001:db8::1:443".parse::<Destination>(), Err(DestinationError::Address(_))));
        assert!(matches!("[2001:db8::1]443".parse::<Destination>(), Err(DestinationError::Address(_))));
    }
}
