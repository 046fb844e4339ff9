//! `lab-probe serve`: dual-stack TCP "pong <n>" and UDP "pong" servers.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::thread;

use nix::ifaddrs::getifaddrs;
use socket2::{Domain, Socket, Type};

use crate::{parse_num, usage, Args};

/// Runs until killed; prints "ready" once every socket is bound.
pub fn main(args: &mut Args) {
    let (mut tcp, mut udp) = (Vec::new(), Vec::new());
    while let Some(flag) = args.next_arg() {
        let list = match flag.as_str() {
            "--tcp" => &mut tcp,
            "--udp" => &mut udp,
            other => usage(&format!("unknown option {other:?} for serve")),
        };
        for p in args.value(&flag).split(',').filter(|p| !p.is_empty()) {
            list.push(parse_num::<u16>("port", p));
        }
    }
    if tcp.is_empty() && udp.is_empty() {
        usage("serve needs --tcp and/or --udp ports");
    }
    let wildcard: SocketAddr = (Ipv6Addr::UNSPECIFIED, 0).into();
    for port in tcp {
        let sock = bind(Type::STREAM, with_port(wildcard, port), Some(false))
            .unwrap_or_else(|e| fatal(&format!("tcp bind [::]:{port}: {e}")));
        if let Err(e) = sock.listen(128) {
            fatal(&format!("listen {port}: {e}"));
        }
        let l = TcpListener::from(sock);
        thread::spawn(move || {
            for conn in l.incoming().flatten() {
                thread::spawn(move || handle_tcp(conn));
            }
        });
    }
    // One UDP socket per local address so replies leave from the address the
    // client sent to (needed by connected UDP clients), plus a dual-stack
    // wildcard fallback for addresses added later.
    let addrs = local_addrs();
    for port in udp {
        for ip in &addrs {
            let v6only = ip.is_ipv6().then_some(true);
            let sock = bind(Type::DGRAM, SocketAddr::new(*ip, port), v6only)
                .unwrap_or_else(|e| fatal(&format!("udp bind {ip} port {port}: {e}")));
            spawn_udp(UdpSocket::from(sock));
        }
        let sock = bind(Type::DGRAM, with_port(wildcard, port), Some(false))
            .unwrap_or_else(|e| fatal(&format!("udp bind [::]:{port}: {e}")));
        spawn_udp(UdpSocket::from(sock));
    }
    println!("ready");
    io::stdout().flush().ok();
    loop {
        thread::park();
    }
}

fn fatal(msg: &str) -> ! {
    eprintln!("lab-probe serve: {msg}");
    std::process::exit(2)
}

fn with_port(mut sa: SocketAddr, port: u16) -> SocketAddr {
    sa.set_port(port);
    sa
}

/// Reads until newline or EOF, replies `pong <bytes before newline>`.
fn handle_tcp(mut s: TcpStream) {
    let mut count = 0usize;
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => match buf[..n].iter().position(|b| *b == b'\n') {
                Some(i) => {
                    count += i;
                    break;
                }
                None => count += n,
            },
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
    let _ = s.write_all(format!("pong {count}\n").as_bytes());
}

fn spawn_udp(sock: UdpSocket) {
    thread::spawn(move || {
        let mut buf = [0u8; 65536];
        loop {
            if let Ok((_, from)) = sock.recv_from(&mut buf) {
                let _ = sock.send_to(b"pong", from);
            }
        }
    });
}

/// Creates a socket with SO_REUSEADDR (and IPV6_V6ONLY when given) bound to `sa`.
fn bind(kind: Type, sa: SocketAddr, v6only: Option<bool>) -> io::Result<Socket> {
    let sock = Socket::new(Domain::for_address(sa), kind, None)?;
    sock.set_reuse_address(true)?;
    if let Some(v) = v6only {
        sock.set_only_v6(v)?;
    }
    sock.bind(&sa.into())?;
    Ok(sock)
}

/// Local unicast addresses (IPv6 link-local excluded) from getifaddrs(3).
fn local_addrs() -> Vec<IpAddr> {
    let addrs = getifaddrs().unwrap_or_else(|e| fatal(&format!("getifaddrs: {e}")));
    let mut out: Vec<IpAddr> = addrs
        .filter_map(|ifa| {
            let a = ifa.address?;
            if let Some(sin) = a.as_sockaddr_in() {
                Some(IpAddr::V4(sin.ip()))
            } else {
                let ip = a.as_sockaddr_in6()?.ip();
                (ip.segments()[0] & 0xffc0 != 0xfe80).then_some(IpAddr::V6(ip))
            }
        })
        .collect();
    out.sort();
    out.dedup();
    out
}
