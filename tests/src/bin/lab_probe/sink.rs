//! `lab-probe sink --tcp PORT [--udp PORT]`: a receiver that counts what arrives, for the
//! budget tests' byte-exact count at the receiver. TCP payload bytes of every connection on
//! PORT (any address) and UDP datagram payload bytes on the UDP port are summed per protocol.
//! Prints `ready`, then `{"tcp":N,"udp":M}` whenever a total changed (at most every 10 ms), each
//! line flushed at once. Runs until killed.
use std::io::{self, Read, Write};
use std::net::{Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use socket2::{Domain, Socket, Type};

use crate::{
    args::{parse_num, usage, Args},
    escape::setopt,
};

fn dual_stack(kind: Type, port: u16) -> io::Result<Socket> {
    let s = Socket::new(Domain::IPV6, kind, None)?;
    s.set_only_v6(false)?;
    s.set_reuse_address(true)?;
    s.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)).into())?;
    Ok(s)
}

pub fn main(args: &mut Args) {
    let (mut tcp, mut udp) = (None, None);
    while let Some(flag) = args.next_arg() {
        match flag.as_str() {
            "--tcp" => tcp = Some(parse_num::<u16>("port", &args.value(&flag))),
            "--udp" => udp = Some(parse_num::<u16>("port", &args.value(&flag))),
            other => usage(&format!("unknown option {other:?} for sink")),
        }
    }
    let totals = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    if let Some(port) = tcp {
        let s = dual_stack(Type::STREAM, port).and_then(|s| s.listen(128).map(|()| s));
        let l = TcpListener::from(s.unwrap_or_else(|e| usage(&format!("sink tcp {port}: {e}"))));
        let totals = totals.clone();
        thread::spawn(move || {
            for mut conn in l.incoming().flatten() {
                let totals = totals.clone();
                thread::spawn(move || {
                    let mut buf = vec![0u8; 256 << 10];
                    while let Ok(n) = conn.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        totals[0].fetch_add(n as u64, Ordering::Relaxed);
                    }
                });
            }
        });
    }
    if let Some(port) = udp {
        let s = dual_stack(Type::DGRAM, port).unwrap_or_else(|e| usage(&format!("sink udp {port}: {e}")));
        // A burst of datagrams must not overflow the receive buffer (the default holds about 90
        // of 1000 bytes): what the sender's kernel let out is what is counted here.
        // Past `net.core.rmem_max`: the lab runs as root.
        let bytes: libc::c_int = 16 << 20;
        setopt(&s, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &bytes.to_ne_bytes())
            .unwrap_or_else(|e| usage(&format!("sink udp {port} SO_RCVBUFFORCE: {e}")));
        let sock = UdpSocket::from(s);
        let totals = totals.clone();
        thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            while let Ok((n, _)) = sock.recv_from(&mut buf) {
                totals[1].fetch_add(n as u64, Ordering::Relaxed);
            }
        });
    }
    println!("ready");
    io::stdout().flush().ok();
    let mut last = (0, 0);
    loop {
        thread::sleep(Duration::from_millis(10));
        let now = (totals[0].load(Ordering::Relaxed), totals[1].load(Ordering::Relaxed));
        if now != last {
            last = now;
            println!("{{\"tcp\":{},\"udp\":{}}}", now.0, now.1);
            io::stdout().flush().ok();
        }
    }
}
