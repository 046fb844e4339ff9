//! `lab-probe raw ADDR PORT [--count N]`: tries to send N UDP datagrams through a raw IPv4/IPv6 socket
//! (`SOCK_RAW`, `IPPROTO_UDP`; the kernel adds the IP header, we write the UDP header). Raw
//! sockets bypass the cgroup connect/sendmsg hooks: only the packet path can stop them. Always
//! exits 0 and reports `{"ok":true,"reply":"sent N, failed [M ENOBUFS]"}`.
use std::net::IpAddr;

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
    let d = datagram(port);
    // SAFETY: plain socket calls on a descriptor we own, with correctly sized sockaddrs.
    unsafe {
        let (family, fd) = match addr {
            IpAddr::V4(_) => (libc::AF_INET, libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_UDP)),
            IpAddr::V6(_) => {
                (libc::AF_INET6, libc::socket(libc::AF_INET6, libc::SOCK_RAW, libc::IPPROTO_UDP))
            }
        };
        if fd < 0 {
            return Err(*libc::__errno_location());
        }
        let rc = match addr {
            IpAddr::V4(a) => {
                let mut sa: libc::sockaddr_in = std::mem::zeroed();
                sa.sin_family = family as u16;
                sa.sin_addr.s_addr = u32::from_ne_bytes(a.octets());
                libc::sendto(
                    fd,
                    d.as_ptr().cast(),
                    d.len(),
                    0,
                    (&sa as *const libc::sockaddr_in).cast(),
                    size_of::<libc::sockaddr_in>() as u32,
                )
            }
            IpAddr::V6(a) => {
                let mut sa: libc::sockaddr_in6 = std::mem::zeroed();
                sa.sin6_family = family as u16;
                sa.sin6_addr.s6_addr = a.octets();
                libc::sendto(
                    fd,
                    d.as_ptr().cast(),
                    d.len(),
                    0,
                    (&sa as *const libc::sockaddr_in6).cast(),
                    size_of::<libc::sockaddr_in6>() as u32,
                )
            }
        };
        let err = *libc::__errno_location();
        libc::close(fd);
        if rc < 0 {
            return Err(err);
        }
    }
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
