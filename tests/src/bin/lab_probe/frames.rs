//! Packet sockets (AF_PACKET): sending hand-made frames, and watching an interface.
//!
//! * `lab-probe frames KIND IFACE ADDR PORT --marker M [--bypass] [--count N] [--wait-stdin]`:
//!   KIND `ip` (IPv4/UDP to ADDR), `vlan` (the same behind an 802.1Q tag) or `nonip` (ethertype
//!   0x88b5), broadcast on IFACE; `--bypass` sets PACKET_QDISC_BYPASS first. With
//!   `--wait-stdin` the socket is created, "ready" printed, and frames sent after a line on
//!   stdin (a socket made before an agent started). One JSON line like `escape`.
//! * `lab-probe capture IFACE --marker M...`: prints "ready", then `{"seen":"M","after":"..."}`
//!   for every frame on IFACE (either direction) carrying a marker (with up to 40 printable bytes
//!   that follow it), until killed.
use std::{
    io::{self, BufRead, Read, Write},
    net::{IpAddr, Ipv4Addr},
    os::fd::AsRawFd,
};

use nix::net::if_::if_nametoindex;
use socket2::{Domain, Protocol, Socket, Type};

use crate::{
    escape::{check, errno, ipv4_udp, status, Outcome},
    parse_addr, parse_num, usage, Args,
};

const ETH_P_ALL: u16 = 0x0003;
const PACKET_QDISC_BYPASS: libc::c_int = 20;
/// IEEE "local experimental" ethertype.
const ETH_P_EXPERIMENTAL: u16 = 0x88b5;

/// The index of interface `name` in this process's network namespace.
fn ifindex(name: &str) -> i32 {
    match if_nametoindex(name) {
        Ok(i) => i as i32,
        Err(_) => usage(&format!("no interface {name} in this network namespace")),
    }
}

/// A packet socket bound to `ifindex`, receiving every protocol.
fn packet_socket(ifindex: i32) -> io::Result<Socket> {
    let sock =
        Socket::new_raw(Domain::PACKET, Type::RAW, Some(Protocol::from(i32::from(ETH_P_ALL.to_be()))))?;
    let sll = libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: ETH_P_ALL.to_be(),
        sll_ifindex: ifindex,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 0,
        sll_addr: [0; 8],
    };
    // SAFETY: binding our descriptor to a complete sockaddr_ll of the size passed (socket2 and nix
    // build no link-layer address from safe code).
    check(unsafe {
        libc::bind(sock.as_raw_fd(), (&sll as *const libc::sockaddr_ll).cast(), size_of_val(&sll) as u32)
    })?;
    Ok(sock)
}

/// A broadcast Ethernet frame of `kind` carrying the marker.
fn frame(kind: &str, addr: IpAddr, port: u16, marker: &[u8]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    let ip = || match addr {
        IpAddr::V4(dst) => ipv4_udp(Ipv4Addr::new(192, 0, 2, 1), dst, port, marker),
        IpAddr::V6(_) => usage("frames carry IPv4"),
    };
    match kind {
        "ip" => {
            f.extend_from_slice(&0x0800u16.to_be_bytes());
            f.extend_from_slice(&ip());
        }
        "vlan" => {
            f.extend_from_slice(&[0x81, 0x00, 0x00, 100]);
            f.extend_from_slice(&0x0800u16.to_be_bytes());
            f.extend_from_slice(&ip());
        }
        "nonip" => {
            f.extend_from_slice(&ETH_P_EXPERIMENTAL.to_be_bytes());
            f.extend_from_slice(marker);
        }
        other => usage(&format!("unknown frame kind {other:?}")),
    }
    f
}

pub fn send_main(args: &mut Args) -> i32 {
    let kind = args.next_arg().unwrap_or_else(|| usage("missing KIND"));
    let iface = args.next_arg().unwrap_or_else(|| usage("missing IFACE"));
    let addr = parse_addr(&args.next_arg().unwrap_or_else(|| usage("missing ADDR")));
    let port: u16 = parse_num("port", &args.next_arg().unwrap_or_else(|| usage("missing PORT")));
    let (mut marker, mut bypass, mut count, mut wait) = (None, false, 1u32, false);
    while let Some(flag) = args.next_arg() {
        match flag.as_str() {
            "--marker" => marker = Some(args.value("--marker")),
            "--bypass" => bypass = true,
            "--count" => count = parse_num("count", &args.value("--count")),
            "--wait-stdin" => wait = true,
            other => usage(&format!("unknown flag {other}")),
        }
    }
    let marker = marker.unwrap_or_else(|| usage("frames needs --marker"));
    let data = frame(&kind, addr, port, marker.as_bytes());
    let mut out = Outcome { setup: "ok".into(), ..Outcome::default() };
    let sock = match packet_socket(ifindex(&iface)) {
        Ok(sock) => {
            out.socket = "ok".into();
            sock
        }
        Err(e) => {
            out.socket = crate::client::errno_name(errno(&e));
            out.print(&kind);
            return 0;
        }
    };
    if wait {
        println!("ready");
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
    }
    if bypass {
        let one = 1i32.to_ne_bytes();
        // SAFETY: an int option on our descriptor (socket2 and nix have no PACKET_QDISC_BYPASS).
        let rc = unsafe {
            libc::setsockopt(sock.as_raw_fd(), libc::SOL_PACKET, PACKET_QDISC_BYPASS, one.as_ptr().cast(), 4)
        };
        out.setup = status(check(rc));
    }
    for _ in 0..count {
        out.record(sock.send(&data));
    }
    drop(sock);
    out.print(&kind);
    0
}

pub fn capture_main(args: &mut Args) -> ! {
    let iface = args.next_arg().unwrap_or_else(|| usage("missing IFACE"));
    let mut markers = Vec::new();
    while let Some(flag) = args.next_arg() {
        match flag.as_str() {
            "--marker" => markers.push(args.value("--marker")),
            other => usage(&format!("unknown flag {other}")),
        }
    }
    let mut sock = packet_socket(ifindex(&iface)).unwrap_or_else(|e| {
        eprintln!("capture socket: {e}");
        std::process::exit(2)
    });
    println!("ready");
    let _ = std::io::stdout().flush();
    let mut buf = vec![0u8; 65_536];
    loop {
        let n = match sock.read(&mut buf) {
            Ok(n) if n > 0 => n,
            _ => continue,
        };
        let frame = &buf[..n];
        for m in &markers {
            if let Some(at) = frame.windows(m.len()).position(|w| w == m.as_bytes()) {
                let rest = &frame[at + m.len()..];
                let after: String = rest
                    .iter()
                    .take(40)
                    .take_while(|b| b.is_ascii_graphic() || **b == b' ')
                    .map(|&b| b as char)
                    .collect();
                println!("{}", serde_json::json!({ "seen": m, "after": after }));
                let _ = std::io::stdout().flush();
            }
        }
    }
}
