//! `stream ... --reuse listener|accepted PORT`: the upload's socket is one that first took a
//! connection in, the way a workload might try to pass its own connection off as a reply.
//!
//! - `listener`: listens on PORT, accepts one connection (printing `{"listening":PORT}` first
//!   and `{"accepted":"ADDR"}` once in), shuts the listener down (`shutdown(SHUT_RD)` takes a
//!   listener back to CLOSE) and connects that same socket out;
//! - `accepted`: the accepted socket itself is disconnected (`connect(AF_UNSPEC)`) and
//!   connected out.
use std::io;
use std::net::{Shutdown, SocketAddr, SocketAddrV4, TcpStream};
use std::time::Duration;

use serde_json::{json, Value};
use socket2::{Domain, Socket, Type};

use crate::{escape::check, parse_num, usage};

/// Which socket is reused.
#[derive(Clone, Copy)]
pub enum Reuse {
    Listener(u16),
    Accepted(u16),
}

impl Reuse {
    pub fn parse(kind: &str, port: &str) -> Reuse {
        let port = parse_num("port", port);
        match kind {
            "listener" => Reuse::Listener(port),
            "accepted" => Reuse::Accepted(port),
            other => usage(&format!("--reuse takes listener or accepted, not {other:?}")),
        }
    }
}

/// Takes one connection in as `reuse` says (reporting each step through `say`), then connects
/// the chosen socket to `sa`.
pub fn connect(
    reuse: Reuse,
    sa: SocketAddr,
    timeout: Duration,
    say: impl Fn(Value),
) -> io::Result<TcpStream> {
    let (Reuse::Listener(port) | Reuse::Accepted(port)) = reuse;
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    listener.set_reuse_address(true)?;
    listener.bind(&SocketAddr::V4(SocketAddrV4::new([0, 0, 0, 0].into(), port)).into())?;
    listener.listen(1)?;
    say(json!({ "listening": port }));
    let (accepted, peer) = listener.accept()?;
    say(json!({ "accepted": peer.as_socket().map(|a| a.ip().to_string()) }));
    let socket = match reuse {
        Reuse::Listener(_) => {
            drop(accepted);
            listener.shutdown(Shutdown::Read)?;
            listener
        }
        Reuse::Accepted(_) => {
            disconnect(&accepted)?;
            accepted
        }
    };
    socket.connect_timeout(&sa.into(), timeout)?;
    Ok(socket.into())
}

/// `connect(AF_UNSPEC)`: a connected TCP socket back to CLOSE.
fn disconnect(s: &Socket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a zeroed sockaddr with family AF_UNSPEC, its size, and an open socket.
    check(unsafe {
        let mut sa: libc::sockaddr = std::mem::zeroed();
        sa.sa_family = libc::AF_UNSPEC as libc::sa_family_t;
        libc::connect(s.as_raw_fd(), &sa, std::mem::size_of::<libc::sockaddr>() as libc::socklen_t)
    })
    .map(drop)
}
