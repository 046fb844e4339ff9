//! `lab-probe stream ADDR PORT --bytes N [--rate BYTES_PER_SEC] [--mark BYTES]... [--stall-ms S]
//! [--timeout-ms T] [--reuse listener|accepted PORT]`: a long TCP upload for the exfiltration tests, reporting when it crossed
//! byte marks and whether (and when) the firewall stalled it.
//!
//! Writes N × 'x' in chunks of at most 64 KiB (and 100 ms' worth at `--rate`), sleeping so the
//! cumulative bytes never exceed rate × elapsed. "Sent" counts bytes the kernel accepted into the
//! socket buffer. Lines on stdout, each flushed at once:
//!
//! - per `--mark M`, when sent first reaches ≥ M: `{"mark":M,"sent":S,"unix_ms":MS}`;
//! - done (after shutting down writing and reading the lab server's `pong N`):
//!   `{"ok":true,"reply":"pong N","sent":N,"unix_ms":MS}`, exit 0;
//! - with `--stall-ms S`, when the kernel has taken no byte for S ms (send buffer full: the peer
//!   or the firewall stopped acknowledging): `{"ok":false,"sent":S,"stalled":true,"unix_ms":MS}`,
//!   exit 3;
//! - any other failure, as `tcp` reports it plus `sent` and `unix_ms`:
//!   `{"errno":1,"error":"EPERM","ok":false,"sent":0,"stage":"connect","unix_ms":MS}`, exit 1 on
//!   EPERM, 2 otherwise (without `--stall-ms`, a write stalled for T ms is `ETIMEDOUT` at `send`).
//!
//! `--timeout-ms T` (default 2000) bounds connecting and waiting for the reply. `--reuse
//! listener|accepted PORT` uploads from a socket that first took a connection in
//! (`lab_probe/reuse.rs`).
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use serde_json::{json, Value};

use crate::client::{errno_name, Failure};
use crate::reuse::{self, Reuse};
use crate::{failure_json, parse_addr, parse_num, usage, Args};

const CHUNK: u64 = 64 << 10;

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn emit(mut line: Value) {
    line["unix_ms"] = unix_ms().into();
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// `Failure` for an I/O error; socket timeouts (EAGAIN) read as ETIMEDOUT.
fn failure(stage: &'static str, e: io::Error) -> Failure {
    let errno = match (e.raw_os_error(), e.kind()) {
        (Some(libc::EAGAIN), _) => Some(libc::ETIMEDOUT),
        (Some(n), _) => Some(n),
        (None, io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) => Some(libc::ETIMEDOUT),
        (None, _) => None,
    };
    Failure { stage, errno, error: errno.map_or_else(|| e.to_string(), errno_name) }
}

/// Prints the failure line and returns the exit code.
fn fail(f: Failure, sent: u64) -> i32 {
    let (mut line, code) = failure_json(&f);
    line["sent"] = sent.into();
    emit(line);
    code
}

struct Options {
    sa: SocketAddr,
    bytes: u64,
    rate: Option<u64>,
    marks: Vec<u64>,
    stall: Option<Duration>,
    timeout: Duration,
    reuse: Option<Reuse>,
}

fn positive(what: &str, v: &str) -> u64 {
    let n = parse_num(what, v);
    if n == 0 {
        usage(&format!("{what} must be positive"));
    }
    n
}

fn parse(args: &mut Args) -> Options {
    let addr = parse_addr(&args.next_arg().unwrap_or_else(|| usage("missing ADDR")));
    let port: u16 = parse_num("port", &args.next_arg().unwrap_or_else(|| usage("missing PORT")));
    let (mut bytes, mut rate, mut marks, mut stall) = (None, None, Vec::new(), None);
    let (mut timeout, mut reuse) = (Duration::from_millis(2000), None);
    while let Some(flag) = args.next_arg() {
        let v = args.value(&flag);
        match flag.as_str() {
            "--reuse" => reuse = Some(Reuse::parse(&v, &args.value(&flag))),
            "--bytes" => bytes = Some(parse_num("byte count", &v)),
            "--rate" => rate = Some(positive("rate", &v)),
            "--mark" => marks.push(parse_num("mark", &v)),
            "--stall-ms" => stall = Some(Duration::from_millis(positive("stall", &v))),
            "--timeout-ms" => timeout = Duration::from_millis(parse_num("timeout", &v)),
            other => usage(&format!("unknown option {other:?} for stream")),
        }
    }
    marks.sort_unstable();
    let bytes = bytes.unwrap_or_else(|| usage("stream needs --bytes N"));
    Options { sa: SocketAddr::new(addr, port), bytes, rate, marks, stall, timeout, reuse }
}

/// Waits up to `limit`, and at most 10 ms, for `s` to become writable. POLLOUT needs a third of
/// the buffer free, so the caller retries the write after each slice to see smaller progress.
fn wait_writable(s: &TcpStream, limit: Duration) -> io::Result<()> {
    let mut fds = [PollFd::new(s.as_fd(), PollFlags::POLLOUT)];
    let ms = limit.as_millis().clamp(1, 10) as u8;
    match poll(&mut fds, PollTimeout::from(ms)) {
        Ok(_) | Err(Errno::EINTR) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Runs the upload and returns the exit code.
pub fn main(args: &mut Args) -> i32 {
    let o = parse(args);
    let connected = match o.reuse {
        Some(r) => reuse::connect(r, o.sa, o.timeout, emit),
        None => TcpStream::connect_timeout(&o.sa, o.timeout),
    };
    let mut s = match connected {
        Ok(s) => s,
        Err(e) => return fail(failure("connect", e), 0),
    };
    // Non-blocking writes + poll measure "no progress" from the last byte the kernel took;
    // SO_SNDTIMEO bounds a whole write call, which reported stalls up to 2 S late.
    if let Err(e) = s.set_nonblocking(true) {
        return fail(failure("socket", e), 0);
    }
    let stall_limit = o.stall.unwrap_or(o.timeout);
    let buf = vec![b'x'; CHUNK as usize];
    let (mut sent, mut next_mark) = (0u64, 0usize);
    let start = Instant::now();
    let mut idle_since = start;
    loop {
        while o.marks.get(next_mark).is_some_and(|m| *m <= sent) {
            emit(json!({ "mark": o.marks[next_mark], "sent": sent }));
            next_mark += 1;
        }
        if sent >= o.bytes {
            break;
        }
        // Stop each write at the next mark so it is reported the moment it is crossed.
        let mut len = CHUNK.min(o.bytes - sent).min(o.marks.get(next_mark).map_or(u64::MAX, |m| m - sent));
        if let Some(rate) = o.rate {
            len = len.min((rate / 10).max(1));
            let due = Duration::from_secs_f64((sent + len) as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                sleep(wait);
                idle_since = Instant::now();
            }
        }
        match s.write(&buf[..len as usize]) {
            Ok(n) => {
                sent += n as u64;
                idle_since = Instant::now();
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                match stall_limit.checked_sub(idle_since.elapsed()).filter(|d| !d.is_zero()) {
                    Some(left) => {
                        if let Err(e) = wait_writable(&s, left) {
                            return fail(failure("send", e), sent);
                        }
                    }
                    None if o.stall.is_some() => {
                        emit(json!({ "ok": false, "stalled": true, "sent": sent }));
                        return 3;
                    }
                    None => return fail(failure("send", io::ErrorKind::TimedOut.into()), sent),
                }
            }
            Err(e) => return fail(failure("send", e), sent),
        }
    }
    let blocking = s.set_nonblocking(false).and_then(|()| s.set_read_timeout(Some(o.timeout)));
    if let Err(e) = blocking.and_then(|()| s.shutdown(Shutdown::Write)) {
        return fail(failure("send", e), sent);
    }
    match read_reply(&mut s) {
        Ok(reply) => {
            emit(json!({ "ok": true, "sent": sent, "reply": reply }));
            0
        }
        Err(f) => fail(f, sent),
    }
}

/// Reads up to the first newline (or EOF) and returns it trimmed.
fn read_reply(s: &mut TcpStream) -> Result<String, Failure> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    while !buf.contains(&b'\n') {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(failure("recv", e)),
        }
    }
    let text = String::from_utf8_lossy(&buf).trim().to_string();
    if text.is_empty() {
        return Err(Failure { stage: "recv", errno: None, error: "EOF".into() });
    }
    Ok(text)
}
