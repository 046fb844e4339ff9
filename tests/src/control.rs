//! A real control plane for lab tests: `ringfence-control serve` on 127.0.0.1 with a scratch
//! state directory (SQLite), killed on drop; the `ringfence` operator CLI pointed at it; and
//! enrolling lab nodes with the real agent.
use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use crate::{agent::agent_bin, NetNs};

/// A binary built beside the test executable (`cargo build --bins`: `ringfence-control` comes from
/// the control-plane package, `ringfence` from `ringfence-cli`).
fn sibling_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe()");
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} not found near {}; run `cargo build --bins`", exe.display()))
}

/// The control plane and its state.
pub struct ControlPlane {
    child: Option<Child>,
    pub state: PathBuf,
    /// Owns `state`: removed on drop.
    _dir: tempfile::TempDir,
    pub addr: SocketAddr,
    /// The network namespace it (and the CLI, and enrollments) run in; `None`: the test's own.
    netns: Option<PathBuf>,
    /// `--db` (default: SQLite in the state directory).
    db: Option<String>,
}

impl ControlPlane {
    /// Starts `ringfence-control serve` on 127.0.0.1 with a fresh state directory and waits
    /// until it accepts.
    pub fn start(name: &str) -> ControlPlane {
        let port = TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
        Self::start_at(name, SocketAddr::from(([127, 0, 0, 1], port)), None, None)
    }

    /// Starts it inside a lab namespace, listening on `addr` (an address of that namespace).
    pub fn start_in(name: &str, ns: &NetNs, addr: SocketAddr) -> ControlPlane {
        Self::start_at(name, addr, Some(ns.path().to_path_buf()), None)
    }

    /// [`ControlPlane::start_in`] with the database `db` (e.g. a PostgreSQL URL).
    pub fn start_in_with_db(name: &str, ns: &NetNs, addr: SocketAddr, db: Option<String>) -> ControlPlane {
        Self::start_at(name, addr, Some(ns.path().to_path_buf()), db)
    }

    fn start_at(name: &str, addr: SocketAddr, netns: Option<PathBuf>, db: Option<String>) -> ControlPlane {
        let dir = tempfile::Builder::new()
            .prefix(&format!("ringfence-cp-{name}-"))
            .tempdir()
            .expect("control-plane state dir");
        let state = dir.path().to_path_buf();
        let mut cp = ControlPlane { child: None, state, _dir: dir, addr, netns, db };
        cp.restart();
        cp
    }

    /// A command for `bin` in the control plane's namespace.
    fn command(&self, bin: impl AsRef<std::ffi::OsStr>) -> Command {
        match &self.netns {
            None => Command::new(bin),
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={}", ns.display())).arg("--").arg(bin);
                c
            }
        }
    }

    fn accepts(&self) -> bool {
        match &self.netns {
            None => TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok(),
            Some(_) => {
                let probe = format!("exec 3<>/dev/tcp/{}/{}", self.addr.ip(), self.addr.port());
                self.command("bash")
                    .args(["-c", &probe])
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            }
        }
    }

    /// (Re)starts the server on the same state directory and port.
    pub fn restart(&mut self) {
        self.kill();
        let db = self
            .db
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.state.join("control.db").display()));
        let child = self
            .command(sibling_bin("ringfence-control"))
            .args(["serve", "--listen", &self.addr.to_string(), "--db", &db, "--long-poll-max", "20s"])
            // Lab nodes' tunnel addresses (198.51.100.1, .2, ... in enrollment order); their
            // endpoints are the addresses they connect from.
            .args(["--wg-pool", "*=198.51.100.0/24"])
            .arg("--state-dir")
            .arg(&self.state)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ringfence-control");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.accepts() {
            assert!(Instant::now() < deadline, "ringfence-control did not listen on {}", self.addr);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server at once (SIGKILL): an outage.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn ca(&self) -> PathBuf {
        self.state.join("ca.pem")
    }

    /// `ringfence ARGS` against this server; panics unless it exits 0.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = self.cli_output(args);
        assert!(
            out.status.success(),
            "ringfence {args:?}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn cli_output(&self, args: &[&str]) -> Output {
        self.cli_command(args).output().expect("run ringfence")
    }

    fn cli_command(&self, args: &[&str]) -> Command {
        let mut c = self.command(sibling_bin("ringfence"));
        c.args(args)
            .env("RINGFENCE_SERVER", self.url())
            .env("RINGFENCE_CA", self.ca())
            .env("RINGFENCE_ADMIN_TOKEN_FILE", self.state.join("admin.token"));
        c
    }

    /// `ringfence ARGS` running in the background (e.g. `observe -f`): its output lines as they
    /// come; killed on drop.
    pub fn cli_stream(&self, args: &[&str]) -> CliStream {
        let mut child = self.cli_command(args).stdout(Stdio::piped()).spawn().expect("spawn ringfence");
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().expect("lines lock").push(line);
            }
        });
        CliStream { child, lines }
    }

    /// `ringfence ARGS --json` parsed.
    pub fn cli_json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.push("--json");
        let text = self.cli(&all);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("ringfence {args:?} JSON: {e}: {text}"))
    }

    /// Applies a policy (YAML text) to the nodes `selector` picks; returns its version.
    pub fn apply(&self, policy: &str, selector: &str) -> u64 {
        let file = self.state.join("apply.yaml");
        std::fs::write(&file, policy).expect("write policy");
        let v = self.cli_json(&["policy", "apply", file.to_str().expect("utf-8"), "--selector", selector]);
        v["policy"]["version"].as_u64().unwrap_or_else(|| panic!("policy version in {v}"))
    }

    /// Enrolls a node: a one-time token for `region`, then `ringfence-agent enroll` (in the
    /// control plane's namespace). Returns the node id.
    pub fn enroll(&self, region: &str, state_dir: &Path) -> String {
        self.enroll_from(region, state_dir, None)
    }

    /// Like [`ControlPlane::enroll`], with the agent in namespace `from`.
    pub fn enroll_from(&self, region: &str, state_dir: &Path, from: Option<&NetNs>) -> String {
        let token = self.cli(&["token", "create", "--region", region, "--ttl", "10m"]).trim().to_string();
        let mut cmd = match from {
            Some(ns) => ns.command(agent_bin()),
            None => self.command(agent_bin()),
        };
        let out = cmd
            .args(["enroll", "--server", &self.url(), "--token", &token, "--hostname", region])
            .arg("--ca")
            .arg(self.ca())
            .arg("--state-dir")
            .arg(state_dir)
            .output()
            .expect("run ringfence-agent enroll");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "enroll: {text}\n{}", String::from_utf8_lossy(&out.stderr));
        text.split_whitespace()
            .skip_while(|w| *w != "node")
            .nth(1)
            .unwrap_or_else(|| panic!("node id in {text:?}"))
            .to_string()
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // The state directory goes with `_dir`, after this.
        self.kill();
    }
}

/// A CLI command running in the background ([`ControlPlane::cli_stream`]).
pub struct CliStream {
    child: Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl CliStream {
    /// The lines printed so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().expect("lines lock").clone()
    }
}

impl Drop for CliStream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
