//! The real `ringfence-control` binary as a child process: `serve` on a free loopback port with
//! a temporary state directory, its log in a file; killed on drop.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::http::client_at;

/// The control plane binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_ringfence-control");

/// A running `ringfence-control serve`.
pub struct ServerProcess {
    pub child: Child,
    pub addr: SocketAddr,
    /// `https://ADDR`.
    pub base: String,
    pub state: PathBuf,
    pub ca_pem: String,
    pub admin_token: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl ServerProcess {
    /// Starts `ringfence-control serve --listen ADDR --state-dir DIR ARGS` and waits until its CA
    /// exists and `/healthz` answers. With `open_files`, it runs under that limit (soft and
    /// hard, through `prlimit` from util-linux) as a service manager might start it.
    pub async fn start(args: &[&str], open_files: Option<u32>) -> ServerProcess {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let log = dir.path().join("server.log");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut command = match open_files {
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg("--").arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        let child = command
            .args(["serve", "--listen", &addr.to_string()])
            .arg("--state-dir")
            .arg(&state)
            .args(args)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn ringfence-control");
        let mut server = ServerProcess {
            child,
            addr,
            base: format!("https://{addr}"),
            state,
            ca_pem: String::new(),
            admin_token: String::new(),
            log,
            _dir: dir,
        };
        let started = Instant::now();
        server.ca_pem = loop {
            if let Ok(pem) = std::fs::read_to_string(server.state.join("ca.pem")) {
                let c = client_at(&pem, None, None);
                if let Ok(resp) = c.get(format!("{}/healthz", server.base)).send().await {
                    assert_eq!(resp.text().await.unwrap(), "ok\n");
                    break pem;
                }
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("ringfence-control exited at start ({status}):\n{}", server.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "ringfence-control did not come up:\n{}",
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        server.admin_token =
            std::fs::read_to_string(server.state.join("admin.token")).unwrap().trim().to_owned();
        server
    }

    /// Its log (standard error) so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits (at most `timeout`) for the exit status.
    pub async fn terminate(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let stopping = Instant::now();
        loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                return exit;
            }
            assert!(stopping.elapsed() < timeout, "no exit after SIGTERM:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
