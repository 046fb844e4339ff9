//! `lab-probe serve`: dual-stack TCP "pong <n>" and UDP "pong" servers.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{FromRawFd, OwnedFd};
use std::thread;

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
        let fd = bind(libc::SOCK_STREAM, with_port(wildcard, port), Some(false))
            .unwrap_or_else(|e| fatal(&format!("tcp bind [::]:{port}: {e}")));
        if unsafe { libc::listen(std::os::fd::AsRawFd::as_raw_fd(&fd), 128) } != 0 {
            fatal(&format!("listen {port}: {}", io::Error::last_os_error()));
        }
        let l = TcpListener::from(fd);
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
            let fd = bind(libc::SOCK_DGRAM, SocketAddr::new(*ip, port), v6only)
                .unwrap_or_else(|e| fatal(&format!("udp bind {ip} port {port}: {e}")));
            spawn_udp(UdpSocket::from(fd));
        }
        let fd = bind(libc::SOCK_DGRAM, with_port(wildcard, port), Some(false))
            .unwrap_or_else(|e| fatal(&format!("udp bind [::]:{port}: {e}")));
        spawn_udp(UdpSocket::from(fd));
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
fn bind(kind: libc::c_int, sa: SocketAddr, v6only: Option<bool>) -> io::Result<OwnedFd> {
    let family = if sa.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    let raw = unsafe { libc::socket(family, kind | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let setopt = |level, name, val: libc::c_int| -> io::Result<()> {
        let rc = unsafe { libc::setsockopt(raw, level, name, (&val as *const libc::c_int).cast(), 4) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    };
    setopt(libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    if let Some(v) = v6only {
        setopt(libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, v as libc::c_int)?;
    }
    let rc = match sa {
        SocketAddr::V4(v4) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: v4.port().to_be(),
                sin_addr: libc::in_addr { s_addr: u32::from(*v4.ip()).to_be() },
                sin_zero: [0; 8],
            };
            let len = std::mem::size_of_val(&sin) as libc::socklen_t;
            unsafe { libc::bind(raw, (&sin as *const libc::sockaddr_in).cast(), len) }
        }
        SocketAddr::V6(v6) => {
            let mut sin6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_addr.s6_addr = v6.ip().octets();
            let len = std::mem::size_of_val(&sin6) as libc::socklen_t;
            unsafe { libc::bind(raw, (&sin6 as *const libc::sockaddr_in6).cast(), len) }
        }
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Local unicast addresses (IPv6 link-local excluded) from getifaddrs(3).
fn local_addrs() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        fatal(&format!("getifaddrs: {}", io::Error::last_os_error()));
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: getifaddrs returned a valid list; ifa_addr may be null.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            match i32::from(unsafe { (*ifa.ifa_addr).sa_family }) {
                libc::AF_INET => {
                    let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                    out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))));
                }
                libc::AF_INET6 => {
                    let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                    let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                    if ip.segments()[0] & 0xffc0 != 0xfe80 {
                        out.push(IpAddr::V6(ip));
                    }
                }
                _ => {}
            }
        }
        cur = ifa.ifa_next;
    }
    unsafe { libc::freeifaddrs(head) };
    out.sort();
    out.dedup();
    out
}
