//! An S3 server with Object Lock for the audit checkpoint tests: moto (`cargo xtask setup`
//! installs `moto[server]`), on a free loopback port, killed on drop.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `python3 -m moto.server` on a free loopback port; killed on drop.
pub struct Moto {
    child: Child,
    /// Its endpoint, `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Moto {
    /// Starts it and waits until it accepts connections.
    pub fn start() -> Moto {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 (run `cargo xtask setup`, which installs moto[server])");
        let mut moto = Moto { child, url: format!("http://127.0.0.1:{port}") };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("the moto S3 server exited ({status}): run `cargo xtask setup` (pip install 'moto[server]')");
            }
            assert!(started.elapsed() < Duration::from_secs(30), "moto did not listen");
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
