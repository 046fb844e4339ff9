//! `lab-probe`: tiny network client/server used by the Ringfence lab.
//!
//! ```text
//! lab-probe serve --tcp P1,P2 --udp P1,P2
//! lab-probe tcp ADDR PORT [--bytes N] [--timeout-ms T] [--bind LOCAL]
//! lab-probe stream ADDR PORT --bytes N [--rate BYTES_PER_SEC] [--mark BYTES]... [--stall-ms S]
//!                  [--timeout-ms T] [--reuse listener|accepted PORT]
//! lab-probe udp ADDR PORT [--connect] [--timeout-ms T] [--bind LOCAL]
//! lab-probe raw ADDR PORT [--count N]      (UDP through a raw socket)
//! lab-probe escape KIND ADDR PORT --marker M [--via HOP]... [--iface IF] [--count N]
//! lab-probe frames ip|vlan|nonip IFACE ADDR PORT --marker M [--bypass] [--count N] [--wait-stdin]
//! lab-probe capture IFACE --marker M...
//! lab-probe race ADDR UDP_PORT TCP_PORT --marker M --stop-file F
//! lab-probe loop [--duration-ms D] [--stop-file F] [--interval-ms I]
//!                [--timeout-ms T] [--udp-timeout-ms U] --target PROTO:ADDR:PORT:allow|deny ...
//! lab-probe resolve RESOLVER NAME [--aaaa] [--tcp] [--count N] [--connect PORT] [--never ADDR]...
//!                   [--expect-answers]
//! lab-probe dns-forge FROM TO NAME ADDR [--port P] [--mutations N] [--seed S]
//! ```
//!
//! `tcp`/`udp` print one JSON line, `{"ok":true,"reply":"pong 4"}` or
//! `{"ok":false,"errno":1,"error":"EPERM","stage":"connect"}`, and exit 0 on
//! success, 1 on EPERM (a cgroup hook denial), 2 on any other error; usage
//! errors exit 64. ADDR is an IPv4 or IPv6 literal (brackets optional);
//! `::ffff:a.b.c.d` uses an AF_INET6 socket so connect6/sendmsg6 see a mapped
//! address. `stream` is a long paced upload printing a line per byte mark
//! crossed, then the result; a write stalled for S ms exits 3 (see
//! `lab_probe/stream.rs`). Std only (+ serde_json).

#[path = "lab_probe/args.rs"]
mod args;
#[path = "lab_probe/client.rs"]
mod client;
#[path = "lab_probe/escape.rs"]
mod escape;
#[path = "lab_probe/frames.rs"]
mod frames;
#[path = "lab_probe/looper.rs"]
mod looper;
#[path = "lab_probe/raw.rs"]
mod raw;
#[path = "lab_probe/resolve.rs"]
mod resolve;
#[path = "lab_probe/reuse.rs"]
mod reuse;
#[path = "lab_probe/serve.rs"]
mod serve;
#[path = "lab_probe/sink.rs"]
mod sink;
#[path = "lab_probe/stream.rs"]
mod stream;
#[path = "lab_probe/tunnel.rs"]
mod tunnel;

use std::process::exit;
use std::time::Duration;

pub use args::{parse_addr, parse_num, usage, Args, USAGE};

fn main() {
    let mut args = Args::new(std::env::args().skip(1).collect());
    let cmd = args.next_arg().unwrap_or_else(|| usage("missing command"));
    match cmd.as_str() {
        "serve" => serve::main(&mut args),
        "sink" => sink::main(&mut args),
        "tunnel" => exit(tunnel::main(&mut args)),
        "tcp" | "udp" => exit(single(&cmd, &mut args)),
        "stream" => exit(stream::main(&mut args)),
        "loop" => looper::main(&mut args),
        "resolve" => resolve::main(&mut args),
        "dns-forge" => resolve::forge_main(&mut args),
        "raw" => exit(raw::main(&mut args)),
        "escape" => exit(escape::main(&mut args)),
        "race" => exit(escape::race_main(&mut args)),
        "frames" => exit(frames::send_main(&mut args)),
        "capture" => frames::capture_main(&mut args),
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
        }
        other => usage(&format!("unknown command {other:?}")),
    }
}

fn single(cmd: &str, args: &mut Args) -> i32 {
    let addr = parse_addr(&args.next_arg().unwrap_or_else(|| usage("missing ADDR")));
    let port: u16 = parse_num("port", &args.next_arg().unwrap_or_else(|| usage("missing PORT")));
    let mut timeout = Duration::from_millis(2000);
    let mut bytes = None;
    let mut connect = false;
    let mut bind = None;
    while let Some(flag) = args.next_arg() {
        match flag.as_str() {
            "--bind" => bind = Some(parse_addr(&args.value(&flag))),
            "--timeout-ms" => timeout = Duration::from_millis(parse_num("timeout", &args.value(&flag))),
            "--bytes" if cmd == "tcp" => bytes = Some(parse_num("byte count", &args.value(&flag))),
            "--connect" if cmd == "udp" => connect = true,
            other => usage(&format!("unknown option {other:?} for {cmd}")),
        }
    }
    let res = if cmd == "tcp" {
        client::tcp_from(bind, addr, port, bytes, timeout)
    } else {
        client::udp_from(bind, addr, port, connect, timeout)
    };
    let (json, code) = match res {
        Ok(reply) => (serde_json::json!({ "ok": true, "reply": reply }), 0),
        Err(f) => failure_json(&f),
    };
    println!("{json}");
    code
}

/// The JSON line for a failed exchange and its exit code: 1 on EPERM, 2 otherwise.
pub fn failure_json(f: &client::Failure) -> (serde_json::Value, i32) {
    let code = if f.errno == Some(libc::EPERM) { 1 } else { 2 };
    (serde_json::json!({ "ok": false, "errno": f.errno, "error": f.error, "stage": f.stage }), code)
}
