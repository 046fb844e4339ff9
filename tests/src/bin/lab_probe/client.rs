//! One-shot TCP and UDP exchanges.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::time::Duration;

/// Why an exchange failed.
#[derive(Debug, Clone)]
pub struct Failure {
    /// `socket`, `bind`, `connect`, `sendto`, `send`, `recv`.
    pub stage: &'static str,
    /// errno, when there is one.
    pub errno: Option<i32>,
    /// Symbolic errno (or `EOF`).
    pub error: String,
}

impl Failure {
    fn new(stage: &'static str, e: io::Error) -> Failure {
        let errno = match (e.raw_os_error(), e.kind()) {
            // Read timeouts surface as EAGAIN; connect_timeout has no errno.
            (Some(libc::EAGAIN), _) if stage == "recv" => Some(libc::ETIMEDOUT),
            (Some(n), _) => Some(n),
            (None, io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) => Some(libc::ETIMEDOUT),
            (None, _) => None,
        };
        let error = errno.map_or_else(|| e.to_string(), errno_name);
        Failure { stage, errno, error }
    }
}

/// Symbolic name of common errnos.
pub fn errno_name(n: i32) -> String {
    let s = match n {
        libc::EPERM => "EPERM",
        libc::EACCES => "EACCES",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ECONNRESET => "ECONNRESET",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::EINVAL => "EINVAL",
        libc::EPIPE => "EPIPE",
        libc::EAGAIN => "EAGAIN",
        libc::EINPROGRESS => "EINPROGRESS",
        libc::ENOBUFS => "ENOBUFS",
        libc::EMSGSIZE => "EMSGSIZE",
        _ => return format!("errno{n}"),
    };
    s.to_string()
}

/// Connects, sends "ping\n" (or `bytes` × 'x'), shuts down writing and reads
/// the reply (`pong <n>`).
pub fn tcp_once(addr: IpAddr, port: u16, bytes: Option<usize>, timeout: Duration) -> Result<String, Failure> {
    tcp_from(None, addr, port, bytes, timeout)
}

/// [`tcp_once`] from the local address `bind` (any port), when given.
pub fn tcp_from(
    bind: Option<IpAddr>,
    addr: IpAddr,
    port: u16,
    bytes: Option<usize>,
    timeout: Duration,
) -> Result<String, Failure> {
    let sa = SocketAddr::new(addr, port);
    let mut s = match bind {
        None => TcpStream::connect_timeout(&sa, timeout).map_err(|e| Failure::new("connect", e))?,
        Some(local) => {
            let sock = socket2::Socket::new(socket2::Domain::for_address(sa), socket2::Type::STREAM, None)
                .map_err(|e| Failure::new("socket", e))?;
            sock.bind(&SocketAddr::new(local, 0).into()).map_err(|e| Failure::new("bind", e))?;
            sock.connect_timeout(&sa.into(), timeout).map_err(|e| Failure::new("connect", e))?;
            sock.into()
        }
    };
    s.set_read_timeout(Some(timeout)).map_err(|e| Failure::new("socket", e))?;
    s.set_write_timeout(Some(timeout)).map_err(|e| Failure::new("socket", e))?;
    let payload = match bytes {
        Some(n) => vec![b'x'; n],
        None => b"ping\n".to_vec(),
    };
    s.write_all(&payload).map_err(|e| Failure::new("send", e))?;
    s.shutdown(Shutdown::Write).map_err(|e| Failure::new("send", e))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.contains(&b'\n') {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Failure::new("recv", e)),
        }
    }
    reply(buf)
}

/// Sends "ping" by unconnected `sendto` (or `connect` + `send`) and waits
/// for the "pong" datagram.
pub fn udp_once(addr: IpAddr, port: u16, connect: bool, timeout: Duration) -> Result<String, Failure> {
    udp_from(None, addr, port, connect, timeout)
}

/// [`udp_once`] from the local address `bind` (any port), when given.
pub fn udp_from(
    bind: Option<IpAddr>,
    addr: IpAddr,
    port: u16,
    connect: bool,
    timeout: Duration,
) -> Result<String, Failure> {
    let local: SocketAddr = match (bind, addr) {
        (Some(b), _) => (b, 0).into(),
        (None, IpAddr::V4(_)) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        (None, IpAddr::V6(_)) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let s = UdpSocket::bind(local).map_err(|e| Failure::new("bind", e))?;
    s.set_read_timeout(Some(timeout)).map_err(|e| Failure::new("socket", e))?;
    let sa = SocketAddr::new(addr, port);
    if connect {
        s.connect(sa).map_err(|e| Failure::new("connect", e))?;
        s.send(b"ping").map_err(|e| Failure::new("send", e))?;
    } else {
        s.send_to(b"ping", sa).map_err(|e| Failure::new("sendto", e))?;
    }
    let mut buf = [0u8; 512];
    let n = loop {
        match s.recv(&mut buf) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Failure::new("recv", e)),
        }
    };
    reply(buf[..n].to_vec())
}

fn reply(buf: Vec<u8>) -> Result<String, Failure> {
    let text = String::from_utf8_lossy(&buf).trim().to_string();
    if text.is_empty() {
        return Err(Failure { stage: "recv", errno: None, error: "EOF".into() });
    }
    Ok(text)
}
