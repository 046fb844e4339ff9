//! The result of the reference evaluation: the [`Decision`] for one destination and the step
//! that made it; and how the explanation names a rule and explains whether its ports match.

use ipnet::IpNet;
use serde::Serialize;

use crate::countries::{serialize_opt_code, CountryCode};
use crate::destination::Destination;
use crate::model::{Action, Rule};

/// Which step of the precedence decided a [`Decision`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DecidedBy {
    /// A rule's CIDR (step 1).
    CidrRule,
    /// A rule naming the address's country (step 2).
    CountryRule,
    /// `unknownCountry`: the database has no country for the address (step 3).
    UnknownCountry,
    /// `defaultAction` (step 4).
    Default,
}

/// The verdict for one destination.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The action actually taken (in audit mode a deny becomes allow).
    pub action: Action,
    /// True if the policy denied but audit mode allowed the connection.
    pub audited: bool,
    /// The deciding rule id, `None` if `unknownCountry` or the default action decided.
    pub rule: Option<u32>,
    /// The deciding CIDR rule's longest CIDR containing the address (`None` unless
    /// `decided_by` is [`DecidedBy::CidrRule`]).
    pub matched_prefix: Option<IpNet>,
    /// The address's country according to the geo-IP database (`None`: no database, or no
    /// record). Serialized as `"DE"` or null.
    #[serde(serialize_with = "serialize_opt_code")]
    pub country: Option<CountryCode>,
    /// The database network that gave the country.
    pub geo_network: Option<IpNet>,
    /// Which step decided.
    pub decided_by: DecidedBy,
    /// Traffic to the destination must leave inside WireGuard: the address is a peer node
    /// (`spec.peers`), the deciding allow rule has `encryption: required`, or crossBorder is set
    /// and the address is outside the home region. Independent of the mode.
    pub encryption_required: bool,
    /// Why encryption is required (the first reason in the order above), e.g.
    /// `peer node 198.51.100.0/26`, `rule "storage" requires encryption`,
    /// `outside home region eu-west`; `None` if it is not.
    pub encryption_reason: Option<String>,
    /// Human-readable evaluation steps.
    pub explanation: Vec<String>,
}

/// `rule 3 "name" (deny)`, as the explanation names a rule.
pub(super) fn rule_label(rule: &Rule) -> String {
    format!("rule {} \"{}\" ({})", rule.id, rule.name, rule.action)
}

/// Whether a rule's port entries match `dest` (a rule without ports matches everything);
/// explains either way as `LABEL: WHAT; ...` (`what`: why the rule applies to the address,
/// e.g. `198.51.100.0/24 contains 198.51.100.7`). `port_text` is the destination's port and
/// protocol as the explanation shows them.
pub(super) fn explain_ports(
    rule: &Rule,
    what: &str,
    dest: &Destination,
    port_text: &str,
    steps: &mut Vec<String>,
) -> bool {
    let label = rule_label(rule);
    if rule.ports.is_empty() {
        steps.push(format!("{label}: {what}; the rule applies to all ports"));
        true
    } else if let Some(entry) = rule.ports.iter().find(|p| p.matches(dest.port, dest.protocol)) {
        steps.push(format!("{label}: {what}; port entry {entry} matches {port_text}"));
        true
    } else {
        let entries: Vec<String> = rule.ports.iter().map(ToString::to_string).collect();
        steps.push(format!(
            "{label}: {what}, but {port_text} matches none of its ports ({}); rule skipped",
            entries.join(", ")
        ));
        false
    }
}
