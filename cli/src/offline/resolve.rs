//! `ringfence policy explain FILE --to HOST[:PORT][/tcp|udp] --resolve`: which name rule
//! (`to.fqdns`) would let the workload reach HOST, and, for every address this machine's
//! resolver gives for HOST, what the kernel would decide once a pinned resolver answered it:
//! CIDR rules first (a deny still wins), then the name rule, then countries and the default.
use std::io::Write;
use std::net::{IpAddr, ToSocketAddrs};
use std::path::Path;
use std::process::ExitCode;

use ringfence_policy::{Action, DecidedBy, Destination, Policy, Protocol, Rule};

use super::policy::load;
use crate::client::EXIT_USAGE as EXIT_INVALID;

/// `HOST[:PORT][/tcp|udp]` (protocol `tcp` by default).
fn parse_target(to: &str) -> Option<(String, Option<u16>, Protocol)> {
    let (rest, protocol) = match to.rsplit_once('/') {
        Some((rest, "tcp")) => (rest, Protocol::Tcp),
        Some((rest, "udp")) => (rest, Protocol::Udp),
        Some(_) => return None,
        None => (to, Protocol::Tcp),
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => (host, Some(port.parse().ok()?)),
        None => (rest, None),
    };
    (!host.is_empty()).then(|| (host.to_ascii_lowercase(), port, protocol))
}

/// The first allow rule naming `host` whose ports match.
pub fn name_rule<'a>(
    policy: &'a Policy,
    host: &str,
    port: Option<u16>,
    protocol: Protocol,
) -> Option<(&'a Rule, String)> {
    policy.rules.iter().filter(|r| r.action == Action::Allow).find_map(|r| {
        let pattern = r.fqdns.iter().find(|f| f.matches(host))?;
        let ports_ok = r.ports.is_empty() || r.ports.iter().any(|p| p.matches(port, protocol));
        ports_ok.then(|| (r, pattern.to_string()))
    })
}

/// The verdict for `addr` once learned under `rule`: (verdict, deciding rule name, by what).
fn decide(
    policy: &Policy,
    addr: IpAddr,
    port: Option<u16>,
    protocol: Protocol,
    rule: Option<&Rule>,
) -> (String, String, &'static str) {
    let d = policy.evaluate(&Destination { addr, port, protocol });
    let named =
        |id: Option<u32>| id.and_then(|id| policy.rule(id)).map_or("default".to_owned(), |r| r.name.clone());
    match (d.decided_by, rule) {
        (DecidedBy::CidrRule, _) | (_, None) => {
            (d.action.as_str().to_owned(), named(d.rule), "rules-without-names")
        }
        (_, Some(r)) => ("allow".to_owned(), r.name.clone(), "name-rule"),
    }
}

pub fn explain_resolve_command(file: &Path, to: &str, json: bool) -> std::io::Result<ExitCode> {
    let policy = match load(file) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let Some((host, port, protocol)) = parse_target(to) else {
        eprintln!("error: --to with --resolve: expected HOST[:PORT][/tcp|udp], e.g. huggingface.co:443/tcp");
        return Ok(ExitCode::from(EXIT_INVALID));
    };
    let rule = name_rule(&policy, &host, port, protocol);
    let mut addrs: Vec<IpAddr> =
        (host.as_str(), 0).to_socket_addrs().map(|it| it.map(|sa| sa.ip()).collect()).unwrap_or_default();
    addrs.sort_unstable();
    addrs.dedup();
    let decisions: Vec<_> = addrs
        .iter()
        .map(|a| (a, decide(&policy, *a, port, protocol, rule.as_ref().map(|(r, _)| *r))))
        .collect();
    let mut out = std::io::stdout().lock();
    if json {
        let value = serde_json::json!({
            "host": host, "port": port, "protocol": protocol,
            "name_rule": rule.as_ref().map(|(r, p)| serde_json::json!({ "id": r.id, "name": r.name, "pattern": p })),
            "addresses": decisions.iter().map(|(a, (v, r, by))| serde_json::json!({ "addr": a, "verdict": v, "rule": r, "decided_by": by })).collect::<Vec<_>>(),
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    match rule {
        Some((r, p)) => writeln!(
            out,
            "name rule: {} (id {}), pattern {p}: addresses a pinned resolver answers for {host} are allowed",
            r.name, r.id
        )?,
        None => writeln!(out, "name rule: none names {host} with this port and protocol")?,
    }
    if decisions.is_empty() {
        writeln!(out, "addresses: {host} did not resolve here")?;
    }
    for (a, (verdict, rule, by)) in decisions {
        let by = if by == "name-rule" { "learned name" } else { "CIDR/country/default, as without the name" };
        writeln!(out, "  {a}: {verdict} by {rule} ({by})")?;
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_allow_rule_naming_the_host_with_matching_ports_decides() {
        let src = "apiVersion: ringfence.dev/v1\nkind: EgressPolicy\nmetadata: { name: t }\nspec:\n  defaultAction: deny\n  dns: { resolvers: [192.0.2.53] }\n  egress:\n    - name: hub-http\n      action: allow\n      to: { fqdns: [huggingface.co] }\n      ports: [ { port: 80, protocol: tcp } ]\n    - name: hub\n      action: allow\n      to: { fqdns: [huggingface.co, \"*.hf.co\"] }\n      ports: [ { port: 443, protocol: tcp } ]\n    - name: no-cdn-net\n      action: deny\n      to: { cidrs: [198.51.100.0/24] }\n";
        let policy = ringfence_policy::parse_policy(src).expect("valid");
        assert_eq!(parse_target("CDN.hf.co:443/tcp"), Some(("cdn.hf.co".into(), Some(443), Protocol::Tcp)));
        let (r, p) = name_rule(&policy, "cdn.hf.co", Some(443), Protocol::Tcp).expect("rule");
        assert_eq!((r.name.as_str(), p.as_str()), ("hub", "*.hf.co"));
        assert_eq!(name_rule(&policy, "huggingface.co", Some(80), Protocol::Tcp).map(|(r, _)| r.id), Some(1));
        assert!(name_rule(&policy, "hf.co", Some(443), Protocol::Tcp).is_none());
        let allowed = decide(&policy, "203.0.113.9".parse().unwrap(), Some(443), Protocol::Tcp, Some(r));
        assert_eq!((allowed.0.as_str(), allowed.2), ("allow", "name-rule"));
        let denied = decide(&policy, "198.51.100.9".parse().unwrap(), Some(443), Protocol::Tcp, Some(r));
        assert_eq!((denied.0.as_str(), denied.1.as_str()), ("deny", "no-cdn-net"), "a CIDR deny still wins");
    }
}
