//! A real DNS server for the FQDN tests: Debian's dnsmasq in the lab's world namespace,
//! answering from a hosts file the test writes (and rewrites: a SIGHUP makes dnsmasq read it
//! again), with `--local-ttl` as the TTL of every answer and optional CNAMEs. Killed on drop.
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::netns::NetNs;

/// The dnsmasq binary (`dnsmasq-base`, installed by `cargo xtask setup`), if present.
pub fn dnsmasq_bin() -> Option<PathBuf> {
    ["/usr/sbin/dnsmasq", "/usr/bin/dnsmasq"].iter().map(PathBuf::from).find(|p| p.exists())
}

/// A running dnsmasq.
pub struct DnsServer {
    child: Child,
    hosts: PathBuf,
    dir: tempfile::TempDir,
    /// Lines dnsmasq logged.
    log: Arc<Mutex<Vec<String>>>,
}

impl DnsServer {
    /// Starts dnsmasq in `ns` on `listen:53` (UDP and TCP) answering `hosts` (`(name, address)`,
    /// several addresses per name allowed) with TTL `ttl` seconds and `cnames`
    /// (`(alias, target)`); waits until it is started.
    pub fn start(
        ns: &NetNs,
        listen: &str,
        hosts: &[(&str, &str)],
        ttl: u32,
        cnames: &[(&str, &str)],
    ) -> DnsServer {
        let bin = dnsmasq_bin().expect("dnsmasq is installed (cargo xtask setup)");
        let dir = tempfile::tempdir().expect("dnsmasq dir");
        let hosts_path = dir.path().join("hosts");
        write_hosts(&hosts_path, hosts);
        let mut cmd = ns.command(bin);
        cmd.args(["-k", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--bind-interfaces"])
            .arg(format!("--listen-address={listen}"))
            .arg(format!("--addn-hosts={}", hosts_path.display()))
            .arg(format!("--local-ttl={ttl}"))
            .arg(format!("--pid-file={}", dir.path().join("pid").display()))
            .args(["--user=root", "--group=root", "--log-facility=-", "--cache-size=0", "--port=53"]);
        for (alias, target) in cnames {
            cmd.arg(format!("--cname={alias},{target}"));
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn dnsmasq");
        let stderr = child.stderr.take().expect("dnsmasq stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().expect("log").push(line);
            }
        });
        let server = DnsServer { child, hosts: hosts_path, dir, log };
        server.wait_log("started", 1, Duration::from_secs(10));
        server.wait_log("read ", 1, Duration::from_secs(10));
        server
    }

    /// Lines logged containing `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.log.lock().expect("log").iter().filter(|l| l.contains(needle)).count()
    }

    fn wait_log(&self, needle: &str, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.count(needle) < n {
            assert!(
                Instant::now() < deadline,
                "dnsmasq did not log {needle:?} {n} times within {timeout:?}: {:?}",
                self.log.lock().expect("log")
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Replaces the hosts file and makes dnsmasq read it (returns at once; see
    /// [`DnsServer::set_hosts_and_wait`]).
    pub fn set_hosts(&self, hosts: &[(&str, &str)]) {
        write_hosts(&self.hosts, hosts);
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGHUP);
    }

    /// Like [`DnsServer::set_hosts`], and waits until dnsmasq read the new file.
    pub fn set_hosts_and_wait(&self, hosts: &[(&str, &str)]) {
        let reads = self.count("read ");
        self.set_hosts(hosts);
        self.wait_log("read ", reads + 1, Duration::from_secs(10));
    }

    /// The server's scratch directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Writes a hosts file atomically (dnsmasq may read it at any moment).
fn write_hosts(path: &Path, hosts: &[(&str, &str)]) {
    let text: String = hosts.iter().map(|(name, addr)| format!("{addr} {name}\n")).collect();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write hosts");
    std::fs::rename(&tmp, path).expect("rename hosts");
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
