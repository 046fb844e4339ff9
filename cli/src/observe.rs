//! `ringfence observe`: the control plane's flow stream (`GET /v1/observe`, filters applied by
//! the server) as a table or as JSON lines (`-o json`, close to `hubble observe -o json`).

use std::io::Write;

use futures_util::StreamExt;
use ringfence_proto::api::{Endpoint, Flow, ObserveLine, ObserveQuery};

use crate::client::{ApiClient, CliError};
use crate::commands::{ObserveArgs, ServerArgs};

fn query(args: &ObserveArgs) -> Result<String, CliError> {
    let q = ObserveQuery {
        node: args.node.clone(),
        region: args.region.clone(),
        workload: (!args.workload.is_empty()).then(|| args.workload.join(",")),
        verdict: args.verdict.clone(),
        to: args.to.clone(),
        follow: args.follow,
        last: args.last,
    };
    // Checked here too, so a typo is a usage error before any connection.
    ringfence_proto::api::FlowFilter::new(&q).map_err(|e| CliError::Usage(e.0))?;
    let value = serde_json::to_value(&q).expect("query serializes");
    let mut url = url::Url::parse("http://x/v1/observe").expect("literal");
    for (k, v) in value.as_object().expect("an object") {
        let text = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
        url.query_pairs_mut().append_pair(k, &text);
    }
    Ok(format!("/v1/observe?{}", url.query().unwrap_or("")))
}

fn endpoint_text(e: &Endpoint) -> String {
    let mut text = match (&e.ip, e.port) {
        (Some(ip), Some(port)) if ip.contains(':') => format!("[{ip}]:{port}"),
        (Some(ip), Some(port)) => format!("{ip}:{port}"),
        (Some(ip), None) => ip.clone(),
        (None, _) => String::new(),
    };
    if let Some(w) = &e.workload {
        text = if text.is_empty() { w.clone() } else { format!("{text} ({w})") };
    } else if let Some(comm) = &e.comm {
        text = format!("{}{comm}[{}]", if text.is_empty() { "" } else { " " }, e.pid.unwrap_or(0));
    }
    if let Some(c) = &e.country {
        text.push_str(&format!(" {c}"));
    }
    text
}

/// One table row.
fn row(f: &Flow) -> String {
    let node = f.node_name.as_deref().unwrap_or(&f.node_id);
    let decided = match (&f.policy, &f.rule) {
        (Some(p), Some(r)) => format!("{p}/{r}"),
        (None, Some(r)) => r.clone(),
        (Some(p), None) => p.clone(),
        (None, None) => "-".into(),
    };
    let count = if f.count > 1 { format!(" x{}", f.count) } else { String::new() };
    format!(
        "{:<24} {:<16} {:<9} {:<7} {:<32} -> {:<32} {:<5} {:<14} {}{count}",
        &f.time[..f.time.len().min(23)],
        node,
        f.verdict,
        f.traffic_direction,
        endpoint_text(&f.source),
        endpoint_text(&f.destination),
        f.protocol.as_deref().unwrap_or("-"),
        f.event_type,
        decided
    )
}

/// Prints one stream line; returns how many flows it held.
fn print_line(line: &str, json: bool, out: &mut impl Write) -> Result<u64, CliError> {
    if line.trim().is_empty() {
        return Ok(0);
    }
    if json {
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
        return Ok(u64::from(line.starts_with("{\"flow\"")));
    }
    match serde_json::from_str::<ObserveLine>(line) {
        Ok(ObserveLine::Flow(f)) => {
            writeln!(out, "{}", row(&f))?;
            Ok(1)
        }
        Ok(ObserveLine::LostEvents(n)) => {
            writeln!(out, "!! {n} events lost: this stream fell behind")?;
            Ok(0)
        }
        Err(e) => Err(CliError::Protocol(format!("observe line {line:?}: {e}"))),
    }
}

/// Runs `ringfence observe`.
pub async fn run(args: &ServerArgs, observe: &ObserveArgs, out: &mut impl Write) -> Result<(), CliError> {
    let path = query(observe)?;
    let json = observe.output == "json";
    let response = ApiClient::streaming(args)?.get_stream(&path).await?;
    if !json {
        writeln!(
            out,
            "{:<24} {:<16} {:<9} {:<7} {:<32}    {:<32} {:<5} {:<14} POLICY/RULE",
            "TIME", "NODE", "VERDICT", "DIR", "SOURCE", "DESTINATION", "PROTO", "TYPE"
        )?;
    }
    let mut stream = response.bytes_stream();
    let mut pending: Vec<u8> = Vec::new();
    while let Some(chunk) = stream.next().await {
        pending.extend_from_slice(&chunk.map_err(|e| CliError::Protocol(e.to_string()))?);
        let Some(end) = pending.iter().rposition(|b| *b == b'\n') else { continue };
        let complete: Vec<u8> = pending.drain(..=end).collect();
        for line in String::from_utf8_lossy(&complete).lines() {
            print_line(line, json, out)?;
        }
        out.flush()?;
    }
    print_line(&String::from_utf8_lossy(&pending), json, out)?;
    out.flush()?;
    Ok(())
}
