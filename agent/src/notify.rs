//! systemd's readiness protocol (`Type=notify`): the agent says `READY=1` once every hook is
//! attached, so units ordered after it start their workloads only under enforcement. Without
//! `$NOTIFY_SOCKET` (not started by systemd) this does nothing.
use std::os::unix::net::{SocketAddr, UnixDatagram};

use tracing::{debug, warn};

/// Sends `state` (e.g. `READY=1\nSTATUS=enforcing`) to `$NOTIFY_SOCKET`, if set.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return };
    let result = (|| -> std::io::Result<()> {
        let sock = UnixDatagram::unbound()?;
        let bytes = path.as_encoded_bytes();
        match bytes.strip_prefix(b"@") {
            // An abstract socket name.
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                sock.send_to_addr(state.as_bytes(), &SocketAddr::from_abstract_name(name)?)?;
            }
            None => {
                sock.send_to(state.as_bytes(), &path)?;
            }
        }
        Ok(())
    })();
    match result {
        Ok(()) => debug!(state, "told systemd"),
        Err(e) => warn!(error = %e, socket = ?path, "could not notify systemd"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_a_path_socket() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).expect("bind");
        // SAFETY: this test is the only one reading or writing NOTIFY_SOCKET.
        unsafe { std::env::set_var("NOTIFY_SOCKET", &path) };
        notify("READY=1\nSTATUS=enforcing");
        // SAFETY: as above.
        unsafe { std::env::remove_var("NOTIFY_SOCKET") };
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=enforcing");
    }
}
