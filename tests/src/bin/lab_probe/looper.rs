//! `lab-probe loop`: repeatedly exercises targets and counts outcomes.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::client::{tcp_once, udp_once};
use crate::{parse_addr, parse_num, usage, Args};

struct Target {
    spec: String,
    proto: String,
    addr: IpAddr,
    port: u16,
    allow: bool,
    attempts: u64,
    ok: u64,
    eperm: u64,
    other_err: u64,
    wrong: u64,
    errors: BTreeMap<String, u64>,
}

/// Parses `PROTO:ADDR:PORT:allow|deny`; ADDR may be `[v6]` or bare v6.
fn parse_target(spec: &str) -> Target {
    let bad = || usage(&format!("bad --target {spec:?} (want tcp|udp|udpc:ADDR:PORT:allow|deny)"));
    let Some((proto, rest)) = spec.split_once(':') else { bad() };
    let Some((rest, expect)) = rest.rsplit_once(':') else { bad() };
    let Some((addr, port)) = rest.rsplit_once(':') else { bad() };
    if !matches!(proto, "tcp" | "udp" | "udpc") || !matches!(expect, "allow" | "deny") {
        bad();
    }
    Target {
        spec: spec.to_string(),
        proto: proto.to_string(),
        addr: parse_addr(addr),
        port: parse_num("port", port),
        allow: expect == "allow",
        attempts: 0,
        ok: 0,
        eperm: 0,
        other_err: 0,
        wrong: 0,
        errors: BTreeMap::new(),
    }
}

/// Runs the loop and prints one JSON report.
pub fn main(args: &mut Args) {
    let mut duration = None;
    let mut stop_file: Option<PathBuf> = None;
    let mut interval = Duration::from_millis(10);
    let mut tcp_timeout = Duration::from_millis(1000);
    let mut udp_timeout = Duration::from_millis(300);
    let mut targets = Vec::new();
    while let Some(flag) = args.next_arg() {
        let v = args.value(&flag);
        match flag.as_str() {
            "--duration-ms" => duration = Some(Duration::from_millis(parse_num("duration", &v))),
            "--stop-file" => stop_file = Some(PathBuf::from(v)),
            "--interval-ms" => interval = Duration::from_millis(parse_num("interval", &v)),
            "--timeout-ms" => tcp_timeout = Duration::from_millis(parse_num("timeout", &v)),
            "--udp-timeout-ms" => udp_timeout = Duration::from_millis(parse_num("timeout", &v)),
            "--target" => targets.push(parse_target(&v)),
            other => usage(&format!("unknown option {other:?} for loop")),
        }
    }
    if targets.is_empty() {
        usage("loop needs at least one --target");
    }
    // Without --duration-ms: 5 s, or 10 min when a stop file ends the loop.
    let duration = duration.unwrap_or(if stop_file.is_some() {
        Duration::from_secs(600)
    } else {
        Duration::from_secs(5)
    });
    let start = Instant::now();
    let stop = || start.elapsed() >= duration || stop_file.as_ref().is_some_and(|f| f.exists());
    let mut rounds = 0u64;
    'outer: while !stop() {
        for t in targets.iter_mut() {
            if stop() {
                break 'outer;
            }
            attempt(t, tcp_timeout, udp_timeout);
        }
        rounds += 1;
        std::thread::sleep(interval);
    }
    let report = serde_json::json!({
        "duration_ms": start.elapsed().as_millis() as u64,
        "rounds": rounds,
        "targets": targets.iter().map(|t| serde_json::json!({
            "target": t.spec,
            "proto": t.proto,
            "addr": t.addr.to_string(),
            "port": t.port,
            "expect": if t.allow { "allow" } else { "deny" },
            "attempts": t.attempts,
            "ok": t.ok,
            "eperm": t.eperm,
            "other_err": t.other_err,
            "wrong": t.wrong,
            "errors": t.errors,
        })).collect::<Vec<_>>(),
    });
    println!("{report}");
}

fn attempt(t: &mut Target, tcp_timeout: Duration, udp_timeout: Duration) {
    let res = match t.proto.as_str() {
        "tcp" => tcp_once(t.addr, t.port, None, tcp_timeout),
        "udp" => udp_once(t.addr, t.port, false, udp_timeout),
        _ => udp_once(t.addr, t.port, true, udp_timeout),
    };
    t.attempts += 1;
    let right = match res {
        Ok(_) => {
            t.ok += 1;
            t.allow
        }
        Err(f) if f.errno == Some(libc::EPERM) => {
            t.eperm += 1;
            !t.allow
        }
        Err(f) => {
            t.other_err += 1;
            *t.errors.entry(format!("{}:{}", f.stage, f.error)).or_default() += 1;
            false
        }
    };
    if !right {
        t.wrong += 1;
    }
}
