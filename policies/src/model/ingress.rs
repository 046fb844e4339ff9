//! The ingress rules of a policy as a policy of their own, so that the egress compiler and the
//! reference evaluation decide incoming connections with the same semantics: a connection's
//! source address takes the place of the destination, and the workload's own (local) port the
//! place of the destination port.

use ipnet::IpNet;

use super::policy::Policy;
use super::rule::{Action, RawSockets};
use super::selector::Selector;
use crate::prefix::normalize_net;

impl Policy {
    /// A policy whose `rules` are this policy's ingress rules (same ids) with `from.peers: true`
    /// expanded to `spec.peers` and `from.workloads` to the addresses `workloads` resolves the
    /// selector to (network form, IPv4-mapped IPv6 as IPv4, sorted, deduplicated). A rule whose
    /// sources resolve to nothing keeps no CIDR and matches nothing (it never becomes "any").
    /// `default_action` is `defaultIngress`, the mode is this policy's; there are no peers,
    /// regions, crossBorder, exfiltration, unknownCountry or ingress of its own.
    pub fn ingress_policy(&self, workloads: &dyn Fn(&Selector) -> Vec<IpNet>) -> Policy {
        let rules = self
            .ingress
            .iter()
            .map(|rule| {
                let mut rule = rule.clone();
                if rule.peers {
                    rule.cidrs.extend(self.peers.iter().copied());
                }
                if let Some(selector) = &rule.workloads {
                    rule.cidrs.extend(workloads(selector));
                }
                rule.cidrs = rule.cidrs.iter().map(|n| normalize_net(n.trunc())).collect();
                rule.cidrs.sort_unstable();
                rule.cidrs.dedup();
                rule
            })
            .collect();
        Policy {
            name: self.name.clone(),
            mode: self.mode,
            default_action: self.default_ingress,
            rules,
            unknown_country: None,
            peers: Vec::new(),
            regions: Default::default(),
            cross_border: None,
            exfiltration: None,
            raw_sockets: RawSockets::Deny,
            workload_selector: None,
            ingress: Vec::new(),
            default_ingress: Action::Allow,
            dns: Default::default(),
        }
    }
}
