//! `lab-probe escape KIND ADDR PORT --marker M [--via HOP]... [--iface IF] [--from SRC] [--count N]`: the ways
//! a workload might try to get a datagram carrying MARKER past a cgroup's connect-time policy:
//!
//! * `rthdr-udp`, `rthdr-tfo`: an IPv6 segment routing header (`IPV6_RTHDR`, type 4) making the
//!   packet travel through the `--via` hops (in order) before ADDR; UDP, or TCP Fast Open data
//!   in the SYN (the node namespace needs `net.ipv4.tcp_fastopen=5`).
//! * `srr-opt`, `srr-cmsg`: an IPv4 loose source route (LSRR) through the `--via` hops, set with
//!   `IP_OPTIONS` or per message with an `IP_RETOPTS` control message.
//! * `srr-accepted`: a TCP connection the remote side opened: listens on ADDR:PORT, accepts one
//!   connection, gives the accepted socket an LSRR through the `--via` hops (`IP_OPTIONS`; none
//!   without `--via`) and writes the marker to the peer, as if it were a reply.
//! * `ping`: an ICMP/ICMPv6 echo request from a ping socket (SOCK_DGRAM).
//! * `raw-udp`, `raw-icmp`, `raw-hdrincl`: raw IPv4/IPv6 sockets (UDP payload, echo request,
//!   a whole IPv4 header with IP_HDRINCL); `--iface IF` binds to a device and allows broadcast.
//!
//! Packet sockets are in `frames.rs`. Prints one JSON line: what the socket, the setup and the
//! sends returned. It always exits 0: whether anything left is for a capture to tell.
use std::{
    collections::BTreeMap,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::AsRawFd,
};

use ringfence_tests::monotonic_ns;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::{client::errno_name, parse_addr, parse_num, usage, Args};

const IPV6_RTHDR: libc::c_int = 57;
const IP_OPTIONS: libc::c_int = 4;
const IP_RETOPTS: libc::c_int = 7;

/// What happened, for the JSON line.
#[derive(Default)]
pub struct Outcome {
    pub socket: String,
    pub setup: String,
    pub sent: u32,
    pub failed: BTreeMap<String, u32>,
}

impl Outcome {
    pub fn print(&self, kind: &str) {
        println!(
            "{}",
            serde_json::json!({ "kind": kind, "socket": self.socket, "setup": self.setup, "sent": self.sent, "failed": self.failed })
        );
    }

    /// Counts one send: sent, or failed with its errno.
    pub fn record<T>(&mut self, r: io::Result<T>) {
        match r {
            Ok(_) => self.sent += 1,
            Err(e) => *self.failed.entry(errno_name(errno(&e))).or_default() += 1,
        }
    }
}

pub fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

/// `"ok"` or the errno's name.
pub fn status<T>(r: io::Result<T>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => errno_name(errno(&e)),
    }
}

/// A libc return value as a result (the error from errno).
pub fn check<T: Default + PartialOrd>(rc: T) -> io::Result<T> {
    if rc < T::default() {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// The internet checksum.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for chunk in data.chunks(2) {
        let word =
            if chunk.len() == 2 { u16::from_be_bytes([chunk[0], chunk[1]]) } else { (chunk[0] as u16) << 8 };
        sum += word as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An ICMP (v4: with checksum; v6: the kernel fills it for raw ICMPv6) echo request carrying `marker`.
pub fn echo_request(v6: bool, marker: &[u8]) -> Vec<u8> {
    let mut m = vec![if v6 { 128 } else { 8 }, 0, 0, 0, 0x12, 0x34, 0, 1];
    m.extend_from_slice(marker);
    if !v6 {
        let c = checksum(&m);
        m[2..4].copy_from_slice(&c.to_be_bytes());
    }
    m
}

/// A UDP header (checksum 0) and `marker`, to `port`.
pub fn udp_datagram(port: u16, marker: &[u8]) -> Vec<u8> {
    let mut d = Vec::with_capacity(8 + marker.len());
    d.extend_from_slice(&40001u16.to_be_bytes());
    d.extend_from_slice(&port.to_be_bytes());
    d.extend_from_slice(&((8 + marker.len()) as u16).to_be_bytes());
    d.extend_from_slice(&[0, 0]);
    d.extend_from_slice(marker);
    d
}

/// An IPv4 header (+ UDP + marker) for IP_HDRINCL and packet sockets.
pub fn ipv4_udp(src: Ipv4Addr, dst: Ipv4Addr, port: u16, marker: &[u8]) -> Vec<u8> {
    let udp = udp_datagram(port, marker);
    let mut h = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
    h[2..4].copy_from_slice(&((20 + udp.len()) as u16).to_be_bytes());
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    let c = checksum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(&udp);
    h
}

/// A type-4 (segment routing) header: the packet goes through `via` in order, then to the
/// socket's destination (the kernel puts that into segment 0).
fn srh(via: &[Ipv6Addr]) -> Vec<u8> {
    let n = via.len() + 1;
    let mut h = vec![0, (2 * n) as u8, 4, (n - 1) as u8, (n - 1) as u8, 0, 0, 0];
    h.extend_from_slice(&[0u8; 16]); // segment 0: filled by the kernel
    for hop in via.iter().rev() {
        h.extend_from_slice(&hop.octets());
    }
    h
}

/// An IPv4 loose source route option through `via` (NOP-padded to a multiple of 4 bytes).
fn lsrr(via: &[Ipv4Addr]) -> Vec<u8> {
    let mut o = vec![1, 0x83, (3 + 4 * via.len()) as u8, 4];
    for hop in via {
        o.extend_from_slice(&hop.octets());
    }
    o
}

/// A socket option neither socket2 nor nix offers (routing headers, IP options), raw.
pub fn setopt(sock: &Socket, level: libc::c_int, name: libc::c_int, val: &[u8]) -> io::Result<()> {
    // SAFETY: the option value is a live byte buffer of the given length, on our descriptor.
    check(unsafe {
        libc::setsockopt(sock.as_raw_fd(), level, name, val.as_ptr().cast(), val.len() as libc::socklen_t)
    })
    .map(drop)
}

fn send(sock: &Socket, data: &[u8], flags: libc::c_int, to: IpAddr, port: u16) -> io::Result<usize> {
    sock.send_to_with_flags(data, &SocketAddr::new(to, port).into(), flags)
}

/// sendmsg with one IP_RETOPTS control message holding `opts` (neither socket2 nor nix builds
/// that control message).
fn send_with_options(sock: &Socket, data: &[u8], to: IpAddr, port: u16, opts: &[u8]) -> io::Result<isize> {
    let addr = SockAddr::from(SocketAddr::new(to, port));
    let mut iov = libc::iovec { iov_base: data.as_ptr() as *mut _, iov_len: data.len() };
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(opts.len() as u32) } as usize;
    let mut control = vec![0u8; space];
    // SAFETY: a zeroed msghdr pointing at live buffers; the cmsg macros stay inside `control`.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = addr.as_ptr() as *mut libc::c_void;
        msg.msg_namelen = addr.len();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::IPPROTO_IP;
        (*cmsg).cmsg_type = IP_RETOPTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(opts.len() as u32) as usize;
        std::ptr::copy_nonoverlapping(opts.as_ptr(), libc::CMSG_DATA(cmsg), opts.len());
        check(libc::sendmsg(sock.as_raw_fd(), &msg, 0))
    }
}

/// A socket of `ty` (with its flags, e.g. `SOCK_NONBLOCK`) and `proto` for `addr`'s family;
/// records the outcome.
fn socket(addr: IpAddr, ty: libc::c_int, proto: libc::c_int, out: &mut Outcome) -> Option<Socket> {
    let domain = Domain::for_address(SocketAddr::new(addr, 0));
    match Socket::new_raw(domain, Type::from(ty), Some(Protocol::from(proto))) {
        Ok(sock) => {
            out.socket = "ok".into();
            Some(sock)
        }
        Err(e) => {
            out.socket = errno_name(errno(&e));
            None
        }
    }
}

/// Where and how an attempt goes.
struct Attempt<'a> {
    kind: &'a str,
    addr: IpAddr,
    port: u16,
    via: &'a [IpAddr],
    iface: Option<&'a str>,
    /// Source address to bind (e.g. a world host pinging the node from a given address).
    from: Option<IpAddr>,
    marker: &'a [u8],
    count: u32,
}

/// The IPv4 hops of `via`.
fn v4_hops(via: &[IpAddr]) -> Vec<Ipv4Addr> {
    via.iter().filter_map(|h| if let IpAddr::V4(a) = h { Some(*a) } else { None }).collect()
}

/// `srr-accepted`: accepts one connection on `addr:port` (for up to 10 s), source-routes the
/// accepted socket through the IPv4 `via` hops and writes the marker `count` times.
fn accepted(a: &Attempt) -> Outcome {
    let mut out = Outcome { setup: "ok".into(), ..Outcome::default() };
    let Some(listener) = socket(a.addr, libc::SOCK_STREAM, 0, &mut out) else { return out };
    let listening = listener
        .set_reuse_address(true)
        .and_then(|()| listener.bind(&SocketAddr::new(a.addr, a.port).into()))
        .and_then(|()| listener.listen(1))
        .and_then(|()| listener.set_read_timeout(Some(std::time::Duration::from_secs(10))));
    if listening.is_err() {
        out.setup = status(listening);
        return out;
    }
    let sock = match listener.accept() {
        Ok((sock, _)) => sock,
        Err(e) => {
            out.setup = format!("accept: {}", errno_name(errno(&e)));
            return out;
        }
    };
    let hops = v4_hops(a.via);
    if !hops.is_empty() {
        out.setup = status(setopt(&sock, libc::IPPROTO_IP, IP_OPTIONS, &lsrr(&hops)));
    }
    for _ in 0..a.count {
        out.record(sock.send(a.marker));
    }
    // Let the segments leave before the socket closes.
    std::thread::sleep(std::time::Duration::from_millis(50));
    out
}

/// Runs one attempt; returns its outcome.
fn attempt(a: &Attempt) -> Outcome {
    if a.kind == "srr-accepted" {
        return accepted(a);
    }
    let Attempt { kind, addr, port, via, iface, from, marker, count } = *a;
    let mut out = Outcome { setup: "ok".into(), ..Outcome::default() };
    let v6 = addr.is_ipv6();
    let (ty, proto) = match kind {
        "rthdr-udp" | "srr-opt" | "srr-cmsg" => (libc::SOCK_DGRAM, 0),
        "rthdr-tfo" => (libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0),
        "ping" => (libc::SOCK_DGRAM, if v6 { libc::IPPROTO_ICMPV6 } else { libc::IPPROTO_ICMP }),
        "raw-udp" => (libc::SOCK_RAW, libc::IPPROTO_UDP),
        "raw-icmp" => (libc::SOCK_RAW, if v6 { libc::IPPROTO_ICMPV6 } else { libc::IPPROTO_ICMP }),
        "raw-hdrincl" => (libc::SOCK_RAW, libc::IPPROTO_RAW),
        other => usage(&format!("unknown escape kind {other:?}")),
    };
    let Some(sock) = socket(addr, ty, proto, &mut out) else { return out };
    if let Some(src) = from {
        out.setup = status(sock.bind(&SocketAddr::new(src, 0).into()));
    }
    if let Some(dev) = iface {
        let bound = sock.bind_device(Some(dev.as_bytes()));
        let broadcast = sock.set_broadcast(true);
        out.setup = status(broadcast.and(bound));
    }
    let v6_hops: Vec<Ipv6Addr> =
        via.iter().filter_map(|h| if let IpAddr::V6(a) = h { Some(*a) } else { None }).collect();
    let v4_hops = v4_hops(via);
    let r = match kind {
        "rthdr-udp" | "rthdr-tfo" => setopt(&sock, libc::IPPROTO_IPV6, IPV6_RTHDR, &srh(&v6_hops)),
        "srr-opt" => setopt(&sock, libc::IPPROTO_IP, IP_OPTIONS, &lsrr(&v4_hops)),
        _ => Ok(()),
    };
    if r.is_err() {
        out.setup = status(r);
    }
    let payload = match kind {
        "ping" | "raw-icmp" => echo_request(v6, marker),
        "raw-udp" => udp_datagram(port, marker),
        "raw-hdrincl" => match addr {
            IpAddr::V4(dst) => ipv4_udp(Ipv4Addr::UNSPECIFIED, dst, port, marker),
            IpAddr::V6(_) => usage("raw-hdrincl is IPv4"),
        },
        _ => marker.to_vec(),
    };
    for _ in 0..count {
        let r = match kind {
            "rthdr-tfo" => send(&sock, &payload, libc::MSG_FASTOPEN, addr, port),
            "srr-cmsg" => send_with_options(&sock, &payload, addr, port, &lsrr(&v4_hops)).map(|n| n as usize),
            // Raw sockets take no port in the address.
            k if k.starts_with("raw") => send(&sock, &payload, 0, addr, 0),
            _ => send(&sock, &payload, 0, addr, port),
        };
        // TCP Fast Open queues the data with the SYN: EINPROGRESS is a send.
        let r = match r {
            Err(e) if kind == "rthdr-tfo" && e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(0),
            r => r,
        };
        out.record(r);
    }
    // Let a TCP Fast Open SYN leave before the socket closes.
    if kind == "rthdr-tfo" {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    out
}

pub fn main(args: &mut Args) -> i32 {
    let kind = args.next_arg().unwrap_or_else(|| usage("missing KIND"));
    let addr = parse_addr(&args.next_arg().unwrap_or_else(|| usage("missing ADDR")));
    let port: u16 = parse_num("port", &args.next_arg().unwrap_or_else(|| usage("missing PORT")));
    let (mut marker, mut via, mut iface, mut from, mut count) = (None, Vec::new(), None, None, 1u32);
    while let Some(flag) = args.next_arg() {
        match flag.as_str() {
            "--marker" => marker = Some(args.value("--marker")),
            "--via" => via.push(parse_addr(&args.value("--via"))),
            "--iface" => iface = Some(args.value("--iface")),
            "--from" => from = Some(parse_addr(&args.value("--from"))),
            "--count" => count = parse_num("count", &args.value("--count")),
            other => usage(&format!("unknown flag {other}")),
        }
    }
    let marker = marker.unwrap_or_else(|| usage("escape needs --marker"));
    let a = Attempt {
        kind: &kind,
        addr,
        port,
        via: &via,
        iface: iface.as_deref(),
        from,
        marker: marker.as_bytes(),
        count,
    };
    attempt(&a).print(&kind);
    0
}

/// `lab-probe race ADDR UDP_PORT TCP_PORT --marker M --stop-file F`: until F exists, sends UDP
/// datagrams and TCP Fast Open SYNs to ADDR, each carrying `M u <ns>` / `M t <ns>` with the
/// CLOCK_MONOTONIC time it was sent; prints how many of each were attempted.
pub fn race_main(args: &mut Args) -> i32 {
    let addr = parse_addr(&args.next_arg().unwrap_or_else(|| usage("missing ADDR")));
    let udp: u16 = parse_num("port", &args.next_arg().unwrap_or_else(|| usage("missing UDP_PORT")));
    let tcp: u16 = parse_num("port", &args.next_arg().unwrap_or_else(|| usage("missing TCP_PORT")));
    let (mut marker, mut stop) = (None, None);
    while let Some(flag) = args.next_arg() {
        match flag.as_str() {
            "--marker" => marker = Some(args.value("--marker")),
            "--stop-file" => stop = Some(std::path::PathBuf::from(args.value("--stop-file"))),
            other => usage(&format!("unknown flag {other}")),
        }
    }
    let (marker, stop) = (
        marker.unwrap_or_else(|| usage("race needs --marker")),
        stop.unwrap_or_else(|| usage("race needs --stop-file")),
    );
    let (mut sent_udp, mut sent_tcp) = (0u64, 0u64);
    while !stop.exists() {
        let payload = |what: &str| format!("{marker}{what} {} ", monotonic_ns()).into_bytes();
        let mut out = Outcome::default();
        if let Some(sock) = socket(addr, libc::SOCK_DGRAM, 0, &mut out) {
            let _ = send(&sock, &payload("u"), 0, addr, udp);
            sent_udp += 1;
        }
        // Closing right after is fine: the SYN is already queued.
        if let Some(sock) = socket(addr, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0, &mut out) {
            let _ = send(&sock, &payload("t"), libc::MSG_FASTOPEN, addr, tcp);
            sent_tcp += 1;
        }
        std::thread::sleep(std::time::Duration::from_micros(500));
    }
    println!("{}", serde_json::json!({ "udp": sent_udp, "tcp": sent_tcp }));
    0
}
