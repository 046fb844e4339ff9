//! `lab-probe escape KIND ADDR PORT --marker M [--via HOP]... [--iface IF] [--from SRC] [--count N]`: the ways
//! a workload might try to get a datagram carrying MARKER past a cgroup's connect-time policy:
//!
//! * `rthdr-udp`, `rthdr-tfo`: an IPv6 segment routing header (`IPV6_RTHDR`, type 4) making the
//!   packet travel through the `--via` hops (in order) before ADDR; UDP, or TCP Fast Open data
//!   in the SYN (the node namespace needs `net.ipv4.tcp_fastopen=5`).
//! * `srr-opt`, `srr-cmsg`: an IPv4 loose source route (LSRR) through the `--via` hops, set with
//!   `IP_OPTIONS` or per message with an `IP_RETOPTS` control message.
//! * `ping`: an ICMP/ICMPv6 echo request from a ping socket (SOCK_DGRAM).
//! * `raw-udp`, `raw-icmp`, `raw-hdrincl`: raw IPv4/IPv6 sockets (UDP payload, echo request,
//!   a whole IPv4 header with IP_HDRINCL); `--iface IF` binds to a device and allows broadcast.
//!
//! Packet sockets are in `frames.rs`. Prints one JSON line: what the socket, the setup and the
//! sends returned. It always exits 0: whether anything left is for a capture to tell.
use std::{
    collections::BTreeMap,
    ffi::CString,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

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

    pub fn record(&mut self, rc: isize) {
        if rc >= 0 {
            self.sent += 1;
        } else {
            *self.failed.entry(errno_name(last_errno())).or_default() += 1;
        }
    }
}

pub fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// `"ok"` or the errno's name for a libc return value.
pub fn status(rc: libc::c_int) -> String {
    if rc >= 0 {
        "ok".into()
    } else {
        errno_name(last_errno())
    }
}

/// A socket address for `addr:port` (IPv4 or IPv6) as bytes and length.
pub fn sockaddr(addr: IpAddr, port: u16) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        IpAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for sockaddr_in.
            let sin = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as u16;
            sin.sin_port = port.to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.octets());
            size_of::<libc::sockaddr_in>()
        }
        IpAddr::V6(a) => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as u16;
            sin6.sin6_port = port.to_be();
            sin6.sin6_addr.s6_addr = a.octets();
            size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
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

fn setopt(fd: libc::c_int, level: libc::c_int, name: libc::c_int, val: &[u8]) -> libc::c_int {
    // SAFETY: the option value is a live byte buffer of the given length.
    unsafe { libc::setsockopt(fd, level, name, val.as_ptr().cast(), val.len() as libc::socklen_t) }
}

fn send(fd: libc::c_int, data: &[u8], flags: libc::c_int, to: IpAddr, port: u16) -> isize {
    let (ss, len) = sockaddr(to, port);
    // SAFETY: plain sendto on our descriptor with a correctly sized address.
    unsafe {
        libc::sendto(
            fd,
            data.as_ptr().cast(),
            data.len(),
            flags,
            (&ss as *const libc::sockaddr_storage).cast(),
            len,
        )
    }
}

/// sendmsg with one IP_RETOPTS control message holding `opts`.
fn send_with_options(fd: libc::c_int, data: &[u8], to: IpAddr, port: u16, opts: &[u8]) -> isize {
    let (mut ss, len) = sockaddr(to, port);
    let mut iov = libc::iovec { iov_base: data.as_ptr() as *mut _, iov_len: data.len() };
    // SAFETY: CMSG_SPACE is a pure size computation.
    let space = unsafe { libc::CMSG_SPACE(opts.len() as u32) } as usize;
    let mut control = vec![0u8; space];
    // SAFETY: a zeroed msghdr pointing at live buffers; the cmsg macros stay inside `control`.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = (&mut ss as *mut libc::sockaddr_storage).cast();
        msg.msg_namelen = len;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::IPPROTO_IP;
        (*cmsg).cmsg_type = IP_RETOPTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(opts.len() as u32) as usize;
        std::ptr::copy_nonoverlapping(opts.as_ptr(), libc::CMSG_DATA(cmsg), opts.len());
        libc::sendmsg(fd, &msg, 0)
    }
}

fn socket(
    family: libc::c_int,
    ty: libc::c_int,
    proto: libc::c_int,
    out: &mut Outcome,
) -> Option<libc::c_int> {
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(family, ty, proto) };
    out.socket = status(fd);
    (fd >= 0).then_some(fd)
}

fn family(addr: IpAddr) -> libc::c_int {
    if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
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

/// Runs one attempt; returns its outcome.
fn attempt(a: &Attempt) -> Outcome {
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
    let Some(fd) = socket(family(addr), ty, proto, &mut out) else { return out };
    if let Some(src) = from {
        let (ss, len) = sockaddr(src, 0);
        // SAFETY: bind our descriptor to a correctly sized address.
        let rc = unsafe { libc::bind(fd, (&ss as *const libc::sockaddr_storage).cast(), len) };
        out.setup = status(rc);
    }
    if let Some(dev) = iface {
        let one = 1i32.to_ne_bytes();
        let name = CString::new(dev).unwrap_or_else(|_| usage("bad --iface"));
        let rc = setopt(fd, libc::SOL_SOCKET, libc::SO_BINDTODEVICE, name.as_bytes_with_nul());
        let rc2 = setopt(fd, libc::SOL_SOCKET, libc::SO_BROADCAST, &one);
        out.setup = status(rc.min(rc2));
    }
    let v6_hops: Vec<Ipv6Addr> =
        via.iter().filter_map(|h| if let IpAddr::V6(a) = h { Some(*a) } else { None }).collect();
    let v4_hops: Vec<Ipv4Addr> =
        via.iter().filter_map(|h| if let IpAddr::V4(a) = h { Some(*a) } else { None }).collect();
    let rc = match kind {
        "rthdr-udp" | "rthdr-tfo" => setopt(fd, libc::IPPROTO_IPV6, IPV6_RTHDR, &srh(&v6_hops)),
        "srr-opt" => setopt(fd, libc::IPPROTO_IP, IP_OPTIONS, &lsrr(&v4_hops)),
        _ => 0,
    };
    if rc < 0 {
        out.setup = status(rc);
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
        let rc = match kind {
            "rthdr-tfo" => send(fd, &payload, libc::MSG_FASTOPEN, addr, port),
            "srr-cmsg" => send_with_options(fd, &payload, addr, port, &lsrr(&v4_hops)),
            // Raw sockets take no port in the address.
            k if k.starts_with("raw") => send(fd, &payload, 0, addr, 0),
            _ => send(fd, &payload, 0, addr, port),
        };
        // TCP Fast Open queues the data with the SYN: EINPROGRESS is a send.
        let rc = if kind == "rthdr-tfo" && rc < 0 && last_errno() == libc::EINPROGRESS { 0 } else { rc };
        out.record(rc);
    }
    // Let a TCP Fast Open SYN leave before the socket closes.
    if kind == "rthdr-tfo" {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // SAFETY: closing our own descriptor.
    unsafe { libc::close(fd) };
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
        if let Some(fd) = socket(family(addr), libc::SOCK_DGRAM, 0, &mut out) {
            send(fd, &payload("u"), 0, addr, udp);
            // SAFETY: closing our own descriptor.
            unsafe { libc::close(fd) };
            sent_udp += 1;
        }
        if let Some(fd) = socket(family(addr), libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0, &mut out) {
            send(fd, &payload("t"), libc::MSG_FASTOPEN, addr, tcp);
            // SAFETY: closing our own descriptor (the SYN is already queued).
            unsafe { libc::close(fd) };
            sent_tcp += 1;
        }
        std::thread::sleep(std::time::Duration::from_micros(500));
    }
    println!("{}", serde_json::json!({ "udp": sent_udp, "tcp": sent_tcp }));
    0
}

/// CLOCK_MONOTONIC in nanoseconds (the clock the agent reports attach times in).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
