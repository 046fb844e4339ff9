//! `lab-probe raw ADDR PORT [--count N]`: tries to send N UDP datagrams through a raw IPv4/IPv6 socket
//! (`SOCK_RAW`, `IPPROTO_UDP`; the kernel adds the IP header, we write the UDP header). Raw
//! sockets bypass the cgroup connect/sendmsg hooks: only the packet path can stop them. Always
//! exits 0 and reports `{"ok":true,"reply":"sent N, failed [M ENOBUFS]"}`.
use std::{
    io,
    net::{IpAddr, SocketAddr},
};

use socket2::{Domain, Protocol, Socket, Type};

use crate::{client::errno_name, parse_addr, parse_num, usage, Args};

fn datagram(port: u16) -> [u8; 12] {
    let mut d = [0u8; 12];
    d[0..2].copy_from_slice(&40000u16.to_be_bytes());
    d[2..4].copy_from_slice(&port.to_be_bytes());
    d[4..6].copy_from_slice(&12u16.to_be_bytes());
    // Checksum 0: "none" for IPv4; for IPv6 the receiver drops it, which is fine: we count IP
    // packets arriving, not datagrams delivered.
    d[8..12].copy_from_slice(b"raw!");
    d
}

fn send(addr: IpAddr, port: u16) -> Result<(), i32> {
    let errno = |e: io::Error| e.raw_os_error().unwrap_or(0);
    // Raw sockets take no port in the address.
    let to = SocketAddr::new(addr, 0);
    let sock = Socket::new_raw(Domain::for_address(to), Type::RAW, Some(Protocol::UDP)).map_err(errno)?;
    sock.send_to(&datagram(port), &to.into()).map_err(errno)?;
    Ok(())
}

pub fn main(args: &mut Args) -> i32 {
    let addr = parse_addr(&args.next_arg().unwrap_or_else(|| usage("missing ADDR")));
    let port: u16 = parse_num("port", &args.next_arg().unwrap_or_else(|| usage("missing PORT")));
    let mut count = 1u32;
    while let Some(flag) = args.next_arg() {
        match flag.as_str() {
            "--count" => count = parse_num("count", &args.value("--count")),
            other => usage(&format!("unknown flag {other}")),
        }
    }
    // Keep going on errors: a packet dropped by the packet path can surface as ENOBUFS.
    let (mut sent, mut failed) = (0, std::collections::BTreeMap::<String, u32>::new());
    for _ in 0..count {
        match send(addr, port) {
            Ok(()) => sent += 1,
            Err(e) => *failed.entry(errno_name(e)).or_default() += 1,
        }
    }
    let failures: Vec<String> = failed.iter().map(|(e, n)| format!("{n} {e}")).collect();
    println!(
        "{}",
        serde_json::json!({ "ok": true, "reply": format!("sent {sent}, failed [{}]", failures.join(", ")) })
    );
    0
}
