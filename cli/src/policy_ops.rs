//! `ringfence policy apply|diff|history|rollback`.

use std::io::Write;

use ringfence_proto::api::{
    PolicyApplied, PolicyApplyRequest, PolicyDiff, PolicyHistory, RollbackRequest, Selector,
};

use crate::client::{ApiClient, CliError};
use crate::commands::{PolicyOperatorCommand, ServerArgs};
use crate::output::{default_author, print_table, time_text};

fn print_applied(out: &mut impl Write, applied: &PolicyApplied, json: bool) -> std::io::Result<()> {
    if json {
        return writeln!(out, "{}", serde_json::to_string_pretty(applied).expect("serializes"));
    }
    let p = &applied.policy;
    match p.rollback_of {
        Some(old) => writeln!(
            out,
            "rolled back to version {old}: policy {} stored again as version {} for {} (sha256 {})",
            p.name,
            p.version,
            p.selector,
            &p.sha256[..12]
        )?,
        None => writeln!(
            out,
            "applied policy {} as version {} for {} (sha256 {})",
            p.name,
            p.version,
            p.selector,
            &p.sha256[..12]
        )?,
    }
    writeln!(
        out,
        "selected nodes: {}",
        if applied.nodes.is_empty() { "none yet".into() } else { applied.nodes.join(", ") }
    )
}

/// Runs a `policy` command against the control plane.
pub async fn run(args: &ServerArgs, command: PolicyOperatorCommand) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match command {
        PolicyOperatorCommand::Apply { file, selector, author, comment, strict, json } => {
            let selector =
                Selector::parse(&selector).map_err(|e| CliError::Usage(format!("--selector: {e}")))?;
            let policy_yaml = std::fs::read_to_string(&file).map_err(|e| CliError::Input {
                path: file.clone(),
                reason: format!("cannot read policy: {e}"),
            })?;
            let client = ApiClient::new(args)?;
            let req = PolicyApplyRequest {
                policy_yaml,
                selector,
                author: Some(author.unwrap_or_else(default_author)),
                comment,
                strict,
            };
            match client.post::<_, PolicyApplied>("/v1/policies", &req).await {
                Ok(applied) => {
                    if applied.nodes.is_empty() {
                        eprintln!(
                            "warning: selector {} matches no enrolled node: version {} is stored but enforced nowhere yet (check the selector; --strict refuses instead)",
                            applied.policy.selector, applied.policy.version
                        );
                    }
                    print_applied(&mut out, &applied, json)?
                }
                Err(CliError::Refused { status, body }) if !body.diagnostics.is_empty() => {
                    // Same format as `ringfence policy check`.
                    for d in &body.diagnostics {
                        eprintln!("{}:{}:{}: error: {}", file.display(), d.line, d.column, d.message);
                    }
                    return Err(CliError::Refused { status, body });
                }
                Err(e) => return Err(e),
            }
        }
        PolicyOperatorCommand::Diff { from, to } => {
            let client = ApiClient::new(args)?;
            let diff: PolicyDiff = client.get(&format!("/v1/policies/diff?from={from}&to={to}")).await?;
            if diff.diff.is_empty() {
                writeln!(out, "versions {from} and {to} are identical")?;
            } else {
                out.write_all(diff.diff.as_bytes())?;
            }
        }
        PolicyOperatorCommand::History { json } => {
            let client = ApiClient::new(args)?;
            let history: PolicyHistory = client.get("/v1/policies/history").await?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&history).expect("serializes"))?;
            } else {
                let rows: Vec<Vec<String>> = history
                    .policies
                    .iter()
                    .map(|p| {
                        vec![
                            p.version.to_string(),
                            time_text(p.created_ms),
                            p.author.clone(),
                            p.name.clone(),
                            p.selector.to_string(),
                            p.sha256[..12].to_owned(),
                            match (p.rollback_of, &p.comment) {
                                (Some(v), _) => format!("rollback to {v}"),
                                (None, Some(c)) => c.clone(),
                                (None, None) => String::new(),
                            },
                        ]
                    })
                    .collect();
                print_table(
                    &mut out,
                    &["VERSION", "TIME", "AUTHOR", "NAME", "SELECTOR", "SHA256", "NOTE"],
                    &rows,
                )?;
            }
        }
        PolicyOperatorCommand::Rollback { version, author, json } => {
            let client = ApiClient::new(args)?;
            let req = RollbackRequest { version, author: Some(author.unwrap_or_else(default_author)) };
            let applied: PolicyApplied = client.post("/v1/policies/rollback", &req).await?;
            print_applied(&mut out, &applied, json)?;
        }
    }
    Ok(())
}
