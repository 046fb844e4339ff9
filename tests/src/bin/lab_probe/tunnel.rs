//! `lab-probe tunnel udp|icmp ADDR PORT --bytes N --size S`: a tunnel-like transfer for the
//! channel budgets: UDP datagrams of S bytes to PORT (a DNS tunnel through port 53), or ICMP
//! echo requests carrying S payload bytes from a ping socket (an ICMP tunnel; PORT unused),
//! until N payload bytes were attempted. Prints one line:
//! `{"sent":B,"refused":R,"replies":P}`: payload bytes the kernel accepted, sends refused with
//! EPERM (a spent budget), and ICMP echo replies (each awaited for up to 200 ms). Exit 0.
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::args::{parse_addr, parse_num, usage, Args};

pub fn main(args: &mut Args) -> i32 {
    let kind = args.next_arg().unwrap_or_else(|| usage("tunnel needs udp or icmp"));
    let addr: IpAddr = parse_addr(&args.next_arg().unwrap_or_else(|| usage("tunnel needs ADDR")));
    let port: u16 = parse_num("port", &args.next_arg().unwrap_or_else(|| usage("tunnel needs PORT")));
    let (mut bytes, mut size) = (0u64, 1000usize);
    while let Some(flag) = args.next_arg() {
        match flag.as_str() {
            "--bytes" => bytes = parse_num("byte count", &args.value(&flag)),
            "--size" => size = parse_num("size", &args.value(&flag)),
            other => usage(&format!("unknown option {other:?} for tunnel")),
        }
    }
    let domain = if addr.is_ipv4() { Domain::IPV4 } else { Domain::IPV6 };
    let (sock, icmp) = match kind.as_str() {
        "udp" => (Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)), false),
        "icmp" => {
            let proto = if addr.is_ipv4() { Protocol::ICMPV4 } else { Protocol::ICMPV6 };
            (Socket::new(domain, Type::DGRAM, Some(proto)), true)
        }
        other => usage(&format!("unknown tunnel {other:?}")),
    };
    let sock = sock.unwrap_or_else(|e| usage(&format!("tunnel socket: {e}")));
    sock.set_read_timeout(Some(Duration::from_millis(200))).ok();
    let to = SockAddr::from(SocketAddr::new(addr, if icmp { 0 } else { port }));
    let (mut sent, mut refused, mut replies, mut attempted) = (0u64, 0u64, 0u64, 0u64);
    let mut buf = vec![0u8; size + 64];
    let mut seq: u16 = 0;
    while attempted < bytes {
        let mut msg = vec![b'x'; size];
        if icmp {
            seq = seq.wrapping_add(1);
            let kind = if addr.is_ipv4() { 8 } else { 128 };
            let mut m = vec![kind, 0, 0, 0, 0, 0, (seq >> 8) as u8, seq as u8];
            m.append(&mut msg);
            msg = m;
        }
        attempted += size as u64;
        let ok = match sock.send_to(&msg, &to) {
            Ok(_) => true,
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => false,
            Err(e) if e.kind() == ErrorKind::WouldBlock => false,
            Err(e) => usage(&format!("tunnel send: {e}")),
        };
        if ok {
            sent += size as u64;
        } else {
            refused += 1;
        }
        if icmp && ok {
            // SAFETY: reading into initialized bytes viewed as MaybeUninit.
            let uninit =
                unsafe { &mut *(buf.as_mut_slice() as *mut [u8] as *mut [std::mem::MaybeUninit<u8>]) };
            if sock.recv(uninit).is_ok() {
                replies += 1;
            }
        }
    }
    println!("{{\"sent\":{sent},\"refused\":{refused},\"replies\":{replies}}}");
    0
}
