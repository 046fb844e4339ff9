//! `lab-probe resolve RESOLVER NAME [--aaaa] [--tcp] [--count N] [--connect PORT]
//! [--never ADDR]... [--expect-answers]`: DNS lookups like a workload's stub resolver (UDP, and
//! TCP when the answer is truncated or `--tcp`), each followed at once by a TCP connect to
//! every answered address on PORT, and to every `--never` address (which no answer named).
//! Prints one JSON line of counters; exits 0 (the caller judges the counters).
//!
//! The answer parser here is deliberately not the agent's (`ringfence_common::dns`): the test
//! checks the kernel's learning against an independent reading of the same answers.
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use crate::{parse_addr, parse_num, usage, Args};

const TIMEOUT: Duration = Duration::from_millis(2000);

fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&[0, 1]);
    q
}

/// Skips a name (labels, or a compression pointer ending it); `None` if malformed.
fn skip_name(m: &[u8], mut p: usize) -> Option<usize> {
    loop {
        let len = *m.get(p)? as usize;
        if len == 0 {
            return Some(p + 1);
        }
        if len & 0xc0 == 0xc0 {
            return Some(p + 2);
        }
        p += len + 1;
    }
}

/// (truncated, A/AAAA addresses) of a response.
fn answers(m: &[u8]) -> Option<(bool, Vec<IpAddr>)> {
    let truncated = m.get(2)? & 0x02 != 0;
    let an = u16::from_be_bytes([*m.get(6)?, *m.get(7)?]) as usize;
    let mut p = skip_name(m, 12)? + 4;
    let mut out = Vec::new();
    for _ in 0..an {
        p = skip_name(m, p)?;
        let f = m.get(p..p + 10)?;
        let (rtype, rdlen) = (u16::from_be_bytes([f[0], f[1]]), u16::from_be_bytes([f[8], f[9]]) as usize);
        let data = m.get(p + 10..p + 10 + rdlen)?;
        match (rtype, rdlen) {
            (1, 4) => out.push(IpAddr::from([data[0], data[1], data[2], data[3]])),
            (28, 16) => out.push(IpAddr::from(<[u8; 16]>::try_from(data).ok()?)),
            _ => {}
        }
        p += 10 + rdlen;
    }
    Some((truncated, out))
}

fn over_udp(sock: &UdpSocket, q: &[u8]) -> std::io::Result<Vec<u8>> {
    sock.send(q)?;
    let mut buf = vec![0u8; 4096];
    loop {
        let n = sock.recv(&mut buf)?;
        if n >= 2 && buf[..2] == q[..2] {
            return Ok(buf[..n].to_vec());
        }
    }
}

fn over_tcp(server: SocketAddr, q: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&server, TIMEOUT)?;
    s.set_read_timeout(Some(TIMEOUT))?;
    let mut msg = (q.len() as u16).to_be_bytes().to_vec();
    msg.extend_from_slice(q);
    s.write_all(&msg)?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len)?;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf)?;
    Ok(buf)
}

/// Connect outcome: 0 ok, 1 EPERM, 2 other.
fn connect(addr: IpAddr, port: u16) -> u8 {
    match TcpStream::connect_timeout(&SocketAddr::new(addr, port), TIMEOUT) {
        Ok(_) => 0,
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => 1,
        Err(_) => 2,
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

pub fn main(args: &mut Args) {
    let resolver = parse_addr(&args.next_arg().unwrap_or_else(|| usage("missing RESOLVER")));
    let name = args.next_arg().unwrap_or_else(|| usage("missing NAME"));
    let (mut qtype, mut tcp, mut count, mut port, mut never) = (1u16, false, 1u64, None, Vec::new());
    let mut expect_answers = false;
    while let Some(flag) = args.next_arg() {
        match flag.as_str() {
            "--aaaa" => qtype = 28,
            "--tcp" => tcp = true,
            "--count" => count = parse_num("count", &args.value(&flag)),
            "--connect" => port = Some(parse_num::<u16>("port", &args.value(&flag))),
            "--never" => never.push(parse_addr(&args.value(&flag))),
            "--expect-answers" => expect_answers = true,
            other => usage(&format!("unknown option {other:?} for resolve")),
        }
    }
    let server = SocketAddr::new(resolver, 53);
    let bind: SocketAddr = if resolver.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().expect("any");
    let sock = UdpSocket::bind(bind).expect("bind udp");
    sock.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    let udp_refused = sock.connect(server).err().map(|e| e.raw_os_error() == Some(libc::EPERM));
    let (mut lookups, mut failed, mut truncated, mut refused_queries) = (0u64, 0u64, 0u64, 0u64);
    let (mut answered, mut ok, mut eperm, mut other) = (0u64, 0u64, 0u64, 0u64);
    let (mut never_ok, mut never_eperm, mut never_other) = (0u64, 0u64, 0u64);
    let mut seen = BTreeSet::new();
    let mut refused = Vec::new();
    let mut latencies = Vec::with_capacity(count as usize);
    for i in 0..count {
        let q = query(i as u16, &name, qtype);
        let start = Instant::now();
        let reply = if tcp || udp_refused.is_some() { over_tcp(server, &q) } else { over_udp(&sock, &q) };
        let reply = match reply {
            Ok(r) => r,
            Err(e) => {
                if e.raw_os_error() == Some(libc::EPERM) {
                    refused_queries += 1;
                } else {
                    failed += 1;
                }
                continue;
            }
        };
        let parsed = match answers(&reply) {
            Some((true, _)) if !tcp => {
                truncated += 1;
                over_tcp(server, &q).ok().and_then(|r| answers(&r))
            }
            p => p,
        };
        latencies.push(start.elapsed().as_micros() as u64);
        let answered_at = Instant::now();
        lookups += 1;
        let Some((_, addrs)) = parsed else {
            failed += 1;
            continue;
        };
        if expect_answers && addrs.is_empty() {
            failed += 1;
        }
        for a in addrs {
            answered += 1;
            seen.insert(a);
            if let Some(port) = port {
                // Time from the answer to the start of this connect (an earlier connect of the
                // batch may have waited for a SYN retransmission).
                let ms = answered_at.elapsed().as_millis() as u64;
                match connect(a, port) {
                    0 => ok += 1,
                    1 => {
                        eperm += 1;
                        refused.push(
                            serde_json::json!({"addr": a.to_string(), "lookup": i, "after_answer_ms": ms}),
                        );
                    }
                    _ => other += 1,
                }
            }
        }
        for &a in &never {
            match port.map(|p| connect(a, p)) {
                Some(0) => never_ok += 1,
                Some(1) => never_eperm += 1,
                _ => never_other += 1,
            }
        }
    }
    latencies.sort_unstable();
    let report = serde_json::json!({
        "lookups": lookups, "failed": failed, "truncated": truncated, "refused_queries": refused_queries,
        "answered": answered, "distinct": seen.len(), "ok": ok, "eperm": eperm, "other": other,
        "never_ok": never_ok, "never_eperm": never_eperm, "never_other": never_other,
        "p50_us": percentile(&latencies, 0.50), "p99_us": percentile(&latencies, 0.99),
        "refused": refused,
        "addrs": seen.iter().map(ToString::to_string).collect::<Vec<_>>(),
    });
    println!("{report}");
}

/// `lab-probe dns-forge FROM TO NAME ADDR [--port P] [--mutations N] [--seed S]`: sends, from
/// FROM:53, an answer to a question for NAME naming ADDR to TO:P (5353 by default), as an
/// off-path spoofer or a resolver the policy does not pin would; then N mutated copies of it
/// (malformed input for the kernel's parser). Exits 0 when sent.
pub fn forge_main(args: &mut Args) {
    let from = parse_addr(&args.next_arg().unwrap_or_else(|| usage("missing FROM")));
    let to = parse_addr(&args.next_arg().unwrap_or_else(|| usage("missing TO")));
    let name = args.next_arg().unwrap_or_else(|| usage("missing NAME"));
    let addr = parse_addr(&args.next_arg().unwrap_or_else(|| usage("missing ADDR")));
    let (mut port, mut mutations, mut seed) = (5353u16, 0u64, 1u64);
    while let Some(flag) = args.next_arg() {
        match flag.as_str() {
            "--port" => port = parse_num("port", &args.value(&flag)),
            "--mutations" => mutations = parse_num("mutations", &args.value(&flag)),
            "--seed" => seed = parse_num("seed", &args.value(&flag)),
            other => usage(&format!("unknown option {other:?} for dns-forge")),
        }
    }
    let (qtype, data) = match addr {
        IpAddr::V4(a) => (1u16, a.octets().to_vec()),
        IpAddr::V6(a) => (28u16, a.octets().to_vec()),
    };
    let mut m = query(0x4242, &name, qtype);
    m[2] = 0x81;
    m[3] = 0x80;
    m[7] = 1;
    m.extend_from_slice(&[0xc0, 12]);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&[0, 1, 0, 0, 0x0e, 0x10]);
    m.extend_from_slice(&(data.len() as u16).to_be_bytes());
    m.extend_from_slice(&data);
    let sock = UdpSocket::bind(SocketAddr::new(from, 53)).unwrap_or_else(|e| {
        eprintln!("bind {from}:53: {e}");
        std::process::exit(2)
    });
    let target = SocketAddr::new(to, port);
    sock.send_to(&m, target).unwrap_or_else(|e| {
        eprintln!("send to {to}:{port}: {e}");
        std::process::exit(2)
    });
    // `--mutations N`: N more, each with a few bytes flipped, replaced or cut (xorshift from
    // `--seed`, so a run reproduces), paced so the receiver's queue does not overflow.
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..mutations {
        let mut bad = m.clone();
        for _ in 0..(next() % 4 + 1) {
            let at = (next() as usize) % bad.len();
            match next() % 3 {
                0 => bad[at] ^= 1 << (next() % 8),
                1 => bad[at] = next() as u8,
                _ => bad.truncate(at.max(1)),
            }
        }
        let _ = sock.send_to(&bad, target);
        if i % 64 == 63 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
