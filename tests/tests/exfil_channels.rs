//! DNS and ICMP as exfiltration channels (`spec.exfiltration.budgets.dns`, `.icmp`): a
//! DNS-tunnel-like transfer (UDP datagrams to port 53) and an ICMP-tunnel-like one (echo
//! requests with payload) stop at their own budgets, counted at the receiver, each with one
//! alert; other traffic is unaffected. Run as root, serially.
use std::time::Duration;

use ringfence_tests::{policy_head_with, Enforced, Sink};
use serde_json::Value;

const RESOLVER: &str = "203.0.113.5";
const OTHER: &str = "198.51.100.20";
const DNS_BUDGET: u64 = 256 << 10;
const ICMP_BUDGET: u64 = 64 << 10;
const SIZE: u64 = 1000;
const WAIT: Duration = Duration::from_secs(20);

fn tunnel(e: &Enforced, kind: &str, addr: &str, port: &str, bytes: u64) -> Value {
    let out = e.lab.probe_json(&[
        "tunnel",
        kind,
        addr,
        port,
        "--bytes",
        &bytes.to_string(),
        "--size",
        &SIZE.to_string(),
    ]);
    eprintln!("{kind} tunnel: {out}");
    out
}

fn alert(e: &Enforced, budget: &str) -> Value {
    let a = e.agent().wait_for(&format!("{budget} budget alert"), WAIT, |v| {
        v["message"] == "exfiltration alert" && v["budget"] == budget
    });
    let latency = a["latency_ms"].as_f64().expect("latency");
    eprintln!("{budget} alert latency {latency:.2} ms");
    assert!(latency < 100.0, "{a}");
    a
}

#[test]
fn dns_and_icmp_tunnels_stop_at_their_own_budgets() {
    let exfil = "  exfiltration:\n    budgets: { total: 1GiB/1h, dns: 256KiB/1h, icmp: 64KiB/1h }\n";
    let policy = policy_head_with("channels", "enforce", "allow", exfil)
        + "    - name: everything\n      action: allow\n      to: { cidrs: [0.0.0.0/0, \"::/0\"] }\n";
    let e = Enforced::start("channels", &[443], &policy);
    let sink = Sink::start(&e.lab, 9000, Some(53));
    e.lab.node_ns().sysctl("net.ipv4.ping_group_range", "0 2147483647");

    // A DNS tunnel: 4 MiB in 1000-byte datagrams through the resolver's port.
    let r = tunnel(&e, "udp", RESOLVER, "53", 16 * DNS_BUDGET);
    assert!(r["refused"].as_u64().unwrap_or(0) > 0, "the kernel refuses the rest: {r}");
    let dns = sink.settled(Duration::from_millis(300), WAIT).udp;
    eprintln!("dns: received {dns}, budget {DNS_BUDGET}, past budget {}", dns as i64 - DNS_BUDGET as i64);
    assert!(dns <= DNS_BUDGET + (256 << 10), "{dns}");
    assert!(dns >= DNS_BUDGET * 9 / 10, "stopped early: {dns}");
    assert_eq!(alert(&e, "dns")["destination"], RESOLVER);

    // An ICMP tunnel: echo requests carrying 1000 bytes each, to another host.
    let r = tunnel(&e, "icmp", OTHER, "0", 16 * ICMP_BUDGET);
    let echoed = r["replies"].as_u64().expect("replies") * SIZE;
    eprintln!(
        "icmp: echoed {echoed}, budget {ICMP_BUDGET}, past budget {}",
        echoed as i64 - ICMP_BUDGET as i64
    );
    assert!((ICMP_BUDGET - 2 * SIZE..=ICMP_BUDGET).contains(&echoed), "{r}");
    assert!(r["refused"].as_u64().unwrap_or(0) > 0, "{r}");
    alert(&e, "icmp");

    // Neither channel's budget touches other traffic.
    e.lab.tcp(OTHER, 443).assert_ok("tcp after both channels are spent");
    let r = e.lab.probe(&["tcp", RESOLVER, "443", "--bytes", "1048576", "--timeout-ms", "5000"]);
    r.assert_ok("a 1 MiB upload to the resolver's host over TCP/443");
}
