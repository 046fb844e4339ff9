//! Validation of a policy document: the header, `metadata` and `spec`, collecting every
//! diagnostic. The rules (egress and ingress), the encryption settings, `spec.exfiltration`,
//! the workload selector and the country groups are validated by the sibling modules.

use super::country_groups::policy_groups;
use super::dns::dns;
use super::encryption::{encryption, Encryption};
use super::exfil::exfiltration;
use super::header::{check_name, header, validate_document, API_VERSION, KIND};
use super::rules::{action, rules as rule_list};
use super::selector::selector;
use super::targets::Direction;
use crate::diagnostic::Diagnostic;
use crate::fields::{choice, fields, string};
use crate::model::{Action, Dns, Exfiltration, Mode, Policy, RawSockets, Rule, Selector};
use crate::yaml_tree::Node;

/// Validates the document root (`None` = empty document); `diags` holds problems found earlier.
pub(crate) fn validate(root: Option<&Node>, diags: Vec<Diagnostic>) -> Result<Policy, Vec<Diagnostic>> {
    validate_document(root, diags, &format!("an {KIND} (apiVersion: {API_VERSION})"), document)
}

fn document(root: &Node, diags: &mut Vec<Diagnostic>) -> Option<Policy> {
    let ctx = "at top level";
    let f = fields(root, &["apiVersion", "kind", "metadata", "spec"], "the policy document", ctx, diags)?;
    header(&f, KIND, ctx, diags);
    let name = f.require("metadata", ctx, diags).and_then(|m| metadata(m, diags));
    let spec = f.require("spec", ctx, diags).and_then(|s| spec(s, diags));
    let Spec {
        mode,
        default_action,
        rules,
        unknown_country,
        encryption,
        exfiltration,
        raw_sockets,
        workload_selector,
        ingress,
        default_ingress,
        dns,
    } = spec?;
    let Encryption { peers, regions, cross_border } = encryption;
    Some(Policy {
        name: name?,
        mode,
        default_action,
        rules,
        unknown_country,
        peers,
        regions,
        cross_border,
        exfiltration,
        raw_sockets,
        workload_selector,
        ingress,
        default_ingress,
        dns,
    })
}

fn metadata(node: &Node, diags: &mut Vec<Diagnostic>) -> Option<String> {
    let ctx = "in metadata";
    let f = fields(node, &["name"], "metadata", ctx, diags)?;
    let value = f.require("name", ctx, diags)?;
    let name = string(value, "\"name\" in metadata", diags)?;
    check_name(value, "policy", name, diags).then(|| name.to_owned())
}

/// The validated `spec`.
struct Spec {
    mode: Mode,
    default_action: Action,
    rules: Vec<Rule>,
    unknown_country: Option<Action>,
    encryption: Encryption,
    exfiltration: Option<Exfiltration>,
    raw_sockets: RawSockets,
    workload_selector: Option<Selector>,
    ingress: Vec<Rule>,
    default_ingress: Action,
    dns: Dns,
}

fn spec(node: &Node, diags: &mut Vec<Diagnostic>) -> Option<Spec> {
    let ctx = "in spec";
    let allowed = [
        "mode",
        "defaultAction",
        "unknownCountry",
        "countryGroups",
        "peers",
        "regions",
        "crossBorder",
        "exfiltration",
        "rawSockets",
        "workloadSelector",
        "egress",
        "ingress",
        "defaultIngress",
        "dns",
    ];
    let f = fields(node, &allowed, "spec", ctx, diags)?;
    let mode = match f.get("mode") {
        None => Some(Mode::Enforce),
        Some(m) => choice(m, "mode", ctx, &["enforce", "audit"], diags).map(|c| match c {
            "audit" => Mode::Audit,
            _ => Mode::Enforce,
        }),
    };
    let default_action =
        f.require("defaultAction", ctx, diags).and_then(|a| action(a, "defaultAction", ctx, diags));
    let unknown_country = match f.get("unknownCountry") {
        None => Some(None),
        Some(u) => action(u, "unknownCountry", ctx, diags).map(Some),
    };
    let raw_sockets = match f.get("rawSockets") {
        None => Some(RawSockets::Deny),
        Some(r) => choice(r, "rawSockets", ctx, &["deny", "policy"], diags).map(|c| match c {
            "policy" => RawSockets::Policy,
            _ => RawSockets::Deny,
        }),
    };
    let groups = f.get("countryGroups").map(|g| policy_groups(g, diags)).unwrap_or_default();
    let peers_given = f.get("peers").is_some();
    let rules = match f.get("egress") {
        None => Some(Vec::new()),
        Some(e) => rule_list(e, Direction::Egress, &groups, peers_given, diags),
    };
    let ingress = match f.get("ingress") {
        None => Some(Vec::new()),
        Some(i) => rule_list(i, Direction::Ingress, &groups, peers_given, diags),
    };
    let default_ingress = match f.get("defaultIngress") {
        None if f.get("ingress").is_some() => Some(Action::Deny),
        None => Some(Action::Allow),
        Some(a) => action(a, "defaultIngress", ctx, diags),
    };
    let workload_selector = match f.get("workloadSelector") {
        None => Some(None),
        Some(w) => selector(
            w,
            "spec.workloadSelector",
            "omit workloadSelector for the node-default policy (the one for workloads no other policy selects)",
            diags,
        )
        .map(Some),
    };
    let encryption = encryption(f.get("peers"), f.get("regions"), f.get("crossBorder"), &groups, diags);
    let exfiltration = match f.get("exfiltration") {
        None => Some(None),
        Some(x) => exfiltration(x, &groups, diags).map(Some),
    };
    let dns = match f.get("dns") {
        None => Some(Dns::default()),
        Some(d) => dns(d, diags),
    };
    let names_domains = rules.as_ref().is_some_and(|r| r.iter().any(|r| !r.fqdns.is_empty()));
    let sinks_domains =
        exfiltration.as_ref().is_some_and(|x| x.as_ref().is_some_and(|x| !x.approved.fqdns.is_empty()));
    if (names_domains || sinks_domains) && dns.as_ref().is_some_and(|d| d.resolvers.is_empty()) {
        let (what, at) = if names_domains {
            ("rules name domains (\"to.fqdns\")", f.get("dns").or(f.get("egress")))
        } else {
            (
                "spec.exfiltration.approvedSinks names domains (\"fqdns\")",
                f.get("dns").or(f.get("exfiltration")),
            )
        };
        diags.push(at.expect("the section naming domains").error(format!(
            "{what} but spec.dns.resolvers is not set: list the resolvers the workloads query (e.g. spec.dns.resolvers: [192.0.2.53]); only their answers are learned"
        )));
        return None;
    }
    Some(Spec {
        dns: dns?,
        mode: mode?,
        default_action: default_action?,
        rules: rules?,
        unknown_country: unknown_country?,
        encryption: encryption?,
        exfiltration: exfiltration?,
        raw_sockets: raw_sockets?,
        workload_selector: workload_selector?,
        ingress: ingress?,
        default_ingress: default_ingress?,
    })
}
