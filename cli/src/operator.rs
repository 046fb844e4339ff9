//! `ringfence token|nodes|alerts|audit`.

use std::io::Write;

use ringfence_proto::api::{
    AddressPin, AlertList, KeyRotation, Labels, NodeInfo, NodeList, Selector, TokenRequest, TokenResponse,
};

use crate::client::{ApiClient, CliError};
use crate::commands::{NodesCommand, OperatorCommand, ServerArgs, TokenCommand};
use crate::output::{print_table, time_text};

/// Parses `--labels k=v,k2=v2` (repeatable).
fn parse_labels(items: &[String]) -> Result<Labels, CliError> {
    let mut labels = Labels::new();
    for item in items {
        let selector = Selector::parse(item).map_err(|e| CliError::Usage(format!("--labels: {e}")))?;
        if selector.region.is_some() {
            return Err(CliError::Usage("--labels: `region` is not a label; use --region".into()));
        }
        labels.extend(selector.labels);
    }
    Ok(labels)
}

/// Runs an operator command.
pub async fn run(args: &ServerArgs, command: OperatorCommand) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match command {
        OperatorCommand::Token { command: TokenCommand::Create { region, labels, ttl, json } } => {
            let labels = parse_labels(&labels)?;
            let ttl = humantime::parse_duration(&ttl)
                .map_err(|e| CliError::Usage(format!("--ttl {ttl:?}: {e} (expected e.g. 1h, 30m)")))?;
            let client = ApiClient::new(args)?;
            let req = TokenRequest { region, labels, ttl_seconds: Some(ttl.as_secs().max(1)) };
            let token: TokenResponse = client.post("/v1/tokens", &req).await?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&token).expect("serializes"))?;
            } else {
                writeln!(out, "{}", token.token)?;
                eprintln!(
                    "one-time join token for region {}{}, expires {}",
                    token.region,
                    if token.labels.is_empty() {
                        String::new()
                    } else {
                        format!(" labels {}", Selector { region: None, labels: token.labels.clone() })
                    },
                    time_text(token.expires_ms)
                );
            }
        }
        OperatorCommand::Nodes { command: None | Some(NodesCommand::List), json } => {
            let client = ApiClient::new(args)?;
            let list: NodeList = client.get("/v1/nodes").await?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&list).expect("serializes"))?;
            } else {
                print_nodes(&mut out, &list.nodes)?;
            }
        }
        OperatorCommand::Nodes { command: Some(NodesCommand::Show { id }), json } => {
            let client = ApiClient::new(args)?;
            let node: NodeInfo = client.get(&format!("/v1/nodes/{id}")).await?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&node).expect("serializes"))?;
            } else {
                print_nodes(&mut out, std::slice::from_ref(&node))?;
                writeln!(out)?;
                print_workloads(&mut out, &node)?;
            }
        }
        OperatorCommand::Nodes { command: Some(NodesCommand::Revoke { id }), .. } => {
            let client = ApiClient::new(args)?;
            let node: NodeInfo =
                client.post(&format!("/v1/nodes/{id}/revoke"), &serde_json::json!({})).await?;
            writeln!(out, "revoked {} (region {})", node.node_id, node.region)?;
        }
        OperatorCommand::Nodes { command: Some(NodesCommand::PinAddress { id, addresses }), .. } => {
            let client = ApiClient::new(args)?;
            let node: NodeInfo =
                client.post(&format!("/v1/nodes/{id}/addresses"), &AddressPin { addresses }).await?;
            writeln!(out, "{}: tunnel addresses {}", node.node_id, node.tunnel_addresses.join(", "))?;
        }
        OperatorCommand::Nodes { command: Some(NodesCommand::RotateKey { id, public_key }), .. } => {
            let client = ApiClient::new(args)?;
            let node: NodeInfo =
                client.post(&format!("/v1/nodes/{id}/wireguard-key"), &KeyRotation { public_key }).await?;
            let key = node.wireguard.map(|w| w.public_key).unwrap_or_default();
            writeln!(out, "{}: WireGuard key {key} (peers get it with their next bundle)", node.node_id)?;
        }
        OperatorCommand::Alerts { limit, json } => {
            let client = ApiClient::new(args)?;
            let list: AlertList = client.get(&format!("/v1/alerts?limit={limit}")).await?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&list).expect("serializes"))?;
            } else {
                let rows: Vec<Vec<String>> = list
                    .alerts
                    .iter()
                    .map(|a| {
                        vec![
                            time_text(a.event.time_ms),
                            a.node_id.clone(),
                            a.event.severity.clone(),
                            a.event.kind.clone(),
                            a.event.summary.clone(),
                        ]
                    })
                    .collect();
                print_table(&mut out, &["TIME", "NODE", "SEVERITY", "KIND", "SUMMARY"], &rows)?;
            }
        }
        OperatorCommand::Audit { command } => crate::audit_ops::run(args, command, &mut out).await?,
        OperatorCommand::Accounts { command } => crate::accounts_ops::run(args, command, &mut out).await?,
        OperatorCommand::Observe(observe) => crate::observe::run(args, &observe, &mut out).await?,
        OperatorCommand::Evidence { command } => crate::evidence::run(args, command, &mut out).await?,
    }
    Ok(())
}

/// The node's reported workloads: cgroup, governing policy, labels.
fn print_workloads(out: &mut impl Write, node: &NodeInfo) -> std::io::Result<()> {
    if node.workloads.is_empty() {
        return writeln!(out, "no workloads reported (the agent runs without --cgroup-root, or none run)");
    }
    let rows: Vec<Vec<String>> = node
        .workloads
        .iter()
        .map(|w| {
            let labels = Selector { region: None, labels: w.labels.clone() }.to_string();
            vec![
                w.path.clone(),
                w.policy.clone().unwrap_or_else(|| "-".into()),
                if labels == "*" { "-".into() } else { labels },
            ]
        })
        .collect();
    print_table(out, &["WORKLOAD", "POLICY", "LABELS"], &rows)
}

fn print_nodes(out: &mut impl Write, nodes: &[NodeInfo]) -> std::io::Result<()> {
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            let labels = Selector { region: None, labels: n.labels.clone() }.to_string();
            let opt = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
            let state = match n.revoked_ms {
                Some(_) => "revoked".to_owned(),
                None if n.cert_not_after_ms <= ringfence_proto::now_ms() => "cert expired".to_owned(),
                None => "active".to_owned(),
            };
            vec![
                n.node_id.clone(),
                n.hostname.clone().unwrap_or_else(|| "-".into()),
                n.region.clone(),
                if labels == "*" { "-".into() } else { labels },
                state,
                time_text(n.cert_not_after_ms),
                opt(n.applied_bundle_version),
                opt(n.applied_policy_version),
                n.wireguard.as_ref().and_then(|w| w.endpoint.clone()).unwrap_or_else(|| "-".into()),
                if n.tunnel_addresses.is_empty() { "-".into() } else { n.tunnel_addresses.join(",") },
                n.last_seen_ms.map(time_text).unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    print_table(
        out,
        &[
            "NODE",
            "HOSTNAME",
            "REGION",
            "LABELS",
            "STATE",
            "CERT EXPIRES",
            "BUNDLE",
            "POLICY",
            "WG ENDPOINT",
            "TUNNEL",
            "LAST SEEN",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_parse_and_refuse_region() {
        let labels = parse_labels(&["gpu=h100,tier=a".into(), "zone=1".into()]).unwrap();
        assert_eq!(labels.len(), 3);
        assert!(parse_labels(&["region=eu".into()]).is_err());
        assert!(parse_labels(&["novalue".into()]).is_err());
    }
}
