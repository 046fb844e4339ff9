//! Validation of the leaf values of a policy: CIDRs (one, or a list) and port entries.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::diagnostic::Diagnostic;
use crate::fields::{choice, fields, non_empty_sequence, string};
use crate::model::{PortMatch, Protocol};
use crate::prefix::normalize_net;
use crate::yaml_tree::{Node, NodeKind};

/// Port entries allowed per rule.
pub const MAX_PORT_ENTRIES: usize = 16;

/// Parses one CIDR (`ADDR/LEN`, or a bare address as /32 or /128), rejecting host bits, and
/// converting IPv4-mapped IPv6 networks to IPv4.
pub(crate) fn cidr(node: &Node, context: &str, diags: &mut Vec<Diagnostic>) -> Option<IpNet> {
    let text = string(node, &format!("a CIDR {context}"), diags)?.trim();
    if text.contains('/') {
        let Ok(net) = text.parse::<IpNet>() else {
            diags.push(node.error(format!(
                "invalid CIDR \"{text}\" {context} (expected ADDRESS/PREFIX-LENGTH, e.g. 198.51.100.0/24 or 2001:db8::/32)"
            )));
            return None;
        };
        if net.addr() != net.network() {
            diags.push(node.error(format!(
                "CIDR \"{text}\" {context} has host bits set; did you mean \"{}\"?",
                net.trunc()
            )));
            return None;
        }
        Some(normalize_net(net))
    } else {
        let Ok(addr) = text.parse::<IpAddr>() else {
            diags.push(node.error(format!(
                "invalid CIDR \"{text}\" {context} (expected an IP address or ADDRESS/PREFIX-LENGTH)"
            )));
            return None;
        };
        Some(normalize_net(IpNet::from(addr)))
    }
}

/// A non-empty sequence of CIDRs; `what` names the field in messages (e.g. `"peers.cidrs"`).
pub(crate) fn named_cidr_list(
    list: &Node,
    what: &str,
    ctx: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<Vec<IpNet>> {
    let items = non_empty_sequence(list, what, ctx, "", diags)?;
    let before = diags.len();
    let cidrs: Vec<_> = items.iter().filter_map(|c| cidr(c, ctx, diags)).collect();
    (diags.len() == before).then_some(cidrs)
}

fn port_number(text: &str) -> Option<u16> {
    let text = text.trim();
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u16>().ok().filter(|p| *p >= 1)
}

/// Validates the `ports` sequence of a rule (`ports_node` is the sequence).
pub(crate) fn ports(
    ports_node: &Node,
    items: &[Node],
    context: &str,
    diags: &mut Vec<Diagnostic>,
) -> Vec<PortMatch> {
    if items.is_empty() {
        diags.push(ports_node.error(format!(
            "\"ports\" {context} must not be empty; omit \"ports\" to match all ports and protocols"
        )));
    }
    if items.len() > MAX_PORT_ENTRIES {
        diags.push(ports_node.error(format!(
            "{} port entries {context}, more than the limit of {MAX_PORT_ENTRIES}; merge adjacent ports into ranges or split the rule",
            items.len()
        )));
    }
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let entry_ctx = format!("in port entry {} of {}", i + 1, context.trim_start_matches("in "));
        if let Some(p) = port_entry(item, &entry_ctx, diags) {
            out.push(p);
        }
    }
    out
}

fn port_entry(node: &Node, context: &str, diags: &mut Vec<Diagnostic>) -> Option<PortMatch> {
    let what = context.trim_start_matches("in ");
    let f = fields(node, &["port", "range", "protocol"], what, context, diags)?;
    let protocol = match f.get("protocol") {
        None => Some(Protocol::Any),
        Some(p) => choice(p, "protocol", context, &["tcp", "udp", "any", "icmp"], diags).map(|c| match c {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            "icmp" => Protocol::Icmp,
            _ => Protocol::Any,
        }),
    };
    if protocol == Some(Protocol::Icmp) {
        if let Some(extra) = f.get("port").or(f.get("range")) {
            diags.push(extra.error(format!(
                "{what} has protocol icmp, which has no ports; remove \"port\"/\"range\" (an icmp entry matches every ICMP message)"
            )));
            return None;
        }
        return Some(PortMatch { lo: 0, hi: u16::MAX, protocol: Protocol::Icmp });
    }
    let range = match (f.get("port"), f.get("range")) {
        (Some(_), Some(range)) => {
            diags.push(range.error(format!("{what} has both \"port\" and \"range\"; use exactly one")));
            None
        }
        (None, None) => {
            diags.push(node.error(format!(
                "{what} needs \"port\" (e.g. 443) or \"range\" (e.g. \"8000-8100\"), or \"protocol: icmp\""
            )));
            None
        }
        (Some(port), None) => single_port(port, context, diags),
        (None, Some(range)) => port_range(range, context, diags),
    };
    let (lo, hi) = range?;
    Some(PortMatch { lo, hi, protocol: protocol? })
}

fn single_port(node: &Node, context: &str, diags: &mut Vec<Diagnostic>) -> Option<(u16, u16)> {
    let text =
        match &node.kind {
            NodeKind::Scalar { value, .. } if !node.is_null() => value.as_str(),
            _ => {
                diags.push(node.error(format!(
                    "expected a port number for \"port\" {context}, found {}",
                    node.describe()
                )));
                return None;
            }
        };
    match port_number(text) {
        Some(p) => Some((p, p)),
        None => {
            diags.push(
                node.error(format!(
                    "invalid port \"{text}\" {context} (expected an integer from 1 to 65535)"
                )),
            );
            None
        }
    }
}

fn port_range(node: &Node, context: &str, diags: &mut Vec<Diagnostic>) -> Option<(u16, u16)> {
    let text = string(node, &format!("\"range\" {context}"), diags)?;
    let parsed = text.split_once('-').and_then(|(lo, hi)| Some((port_number(lo)?, port_number(hi)?)));
    match parsed {
        Some((lo, hi)) if lo <= hi => Some((lo, hi)),
        Some((lo, hi)) => {
            diags.push(
                node.error(format!(
                    "invalid range \"{text}\" {context}: start {lo} is greater than end {hi}"
                )),
            );
            None
        }
        None => {
            diags.push(node.error(format!(
                "invalid range \"{text}\" {context} (expected \"LOW-HIGH\" with ports from 1 to 65535, e.g. \"8000-8100\")"
            )));
            None
        }
    }
}
