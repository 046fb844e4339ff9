//! The reference evaluation of an incoming connection: the ingress rules decide the connection's
//! source address and the workload's own (local) port, with the precedence of egress rules
//! (CIDR rules, then country rules, then `defaultIngress`).

use ipnet::IpNet;

use super::decision::Decision;
use crate::destination::Destination;
use crate::geo::GeoDb;
use crate::model::{format_labels, Policy, Selector};
use crate::prefix::normalize_net;

impl Policy {
    /// Evaluates an incoming connection from `conn.addr` to the workload's local port
    /// `conn.port` (protocol `conn.protocol`) against `spec.ingress`: the reference semantics of
    /// [`compile_ingress`](crate::compile_ingress). `workloads` resolves `from.workloads`
    /// selectors to addresses, `geo` gives source countries. The explanation starts with what
    /// `from.peers` and `from.workloads` resolved to; rule ids are ingress rule ids. A policy
    /// that does not enforce ingress allows everything (`defaultIngress: allow`).
    pub fn evaluate_ingress(
        &self,
        conn: &Destination,
        geo: Option<&GeoDb>,
        workloads: &dyn Fn(&Selector) -> Vec<IpNet>,
    ) -> Decision {
        let ingress = self.ingress_policy(workloads);
        let mut steps = vec![format!(
            "incoming connection from {} to local port {}: deciding by spec.ingress ({} rule(s), defaultIngress: {}); rule ids are ingress rule ids",
            conn.addr,
            conn.port.map_or_else(|| format!("(none)/{}", conn.protocol), |p| format!("{p}/{}", conn.protocol)),
            self.ingress.len(),
            self.default_ingress
        )];
        if !self.enforces_ingress() {
            steps.push("the policy sets no ingress rules and defaultIngress is allow: every incoming connection is accepted".to_owned());
        }
        for rule in &self.ingress {
            let mut sources = Vec::new();
            if rule.peers {
                sources.push(format!("from.peers: {}", list(&self.peers)));
            }
            if let Some(selector) = &rule.workloads {
                let resolved: Vec<IpNet> =
                    workloads(selector).iter().map(|n| normalize_net(n.trunc())).collect();
                sources.push(format!(
                    "from.workloads {} resolves to {}",
                    format_labels(&selector.match_labels),
                    if resolved.is_empty() {
                        "no address (matches nothing)".to_owned()
                    } else {
                        list(&resolved)
                    }
                ));
            }
            if !sources.is_empty() {
                steps.push(format!("ingress rule {} \"{}\": {}", rule.id, rule.name, sources.join("; ")));
            }
        }
        let mut decision = ingress.evaluate_with_geo(conn, geo);
        let rest = decision.explanation.drain(..).map(|step| {
            // The steps are worded for egress; ingress has defaultIngress and no unknownCountry.
            step.replace(" and unknownCountry is not set;", ";")
                .replace("the default action (", "defaultIngress (")
                .replace("no destination port given", "no local port given")
        });
        steps.extend(rest);
        decision.explanation = steps;
        decision
    }
}

/// `a, b, c` or `none`.
fn list(nets: &[IpNet]) -> String {
    if nets.is_empty() {
        return "none".to_owned();
    }
    nets.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}
