//! Running the exfiltration self-test on the node's real datapath: a throwaway cgroup under the
//! enforced cgroup becomes a workload of a reserved policy ([`SELFTEST_POLICY`]) with a small
//! per-destination budget and no approved sink; a client in it uploads to a throwaway sink
//! (a listener of this process on 127.0.0.1); the kernel must stop it. Everything is removed
//! afterwards, however the run ends.
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aya::maps::{HashMap, MapData};
use ringfence_common::{
    BudgetCounter, BudgetKey, GeoInfo, BUDGET_DEST, BUDGET_DEST_MAP, BUDGET_EXHAUSTED, SELFTEST_POLICY,
    SKB_EGRESS,
};

use super::verdict::{judge, Observed, SelftestResult};
use crate::bpf::{links_dir, Throwaway};
use crate::maps::{maps_dir, open, PinnedMaps};

/// The hidden subcommand the client runs as (inside the throwaway cgroup).
pub const CLIENT_COMMAND: &str = "selftest-client";
/// The throwaway workload's per-destination budget and what the client tries to send.
pub const BUDGET: u64 = 1 << 20;
pub const ATTEMPT: u64 = 16 << 20;
const CLIENT_TIMEOUT: Duration = Duration::from_secs(20);

/// What the self-test needs: the agent's bpffs and the cgroup its hooks are attached to.
pub struct Options {
    pub bpffs: PathBuf,
    pub cgroup: PathBuf,
}

/// Runs the test; a setup problem is a failed result with its reason, never an error.
pub fn run(o: &Options) -> SelftestResult {
    judge(&observe(o).unwrap_or_else(|e| Observed {
        setup_error: Some(e),
        budget: BUDGET,
        ..Default::default()
    }))
}

/// The synthetic policy of the throwaway workload.
fn policy() -> Result<ringfence_policy::Compiled, String> {
    let text = format!(
        "apiVersion: ringfence.dev/v1\nkind: EgressPolicy\nmetadata: {{name: ringfence-selftest}}\nspec:\n  defaultAction: allow\n  exfiltration:\n    budgets: {{perDestination: {BUDGET}B/1h}}\n"
    );
    let p = ringfence_policy::parse_policy(&text).map_err(|d| format!("self-test policy: {d:?}"))?;
    ringfence_policy::compile(&p, None).map_err(|e| format!("self-test policy: {e}"))
}

/// The throwaway workload in the kernel: removed (entry and policy tables) on drop.
struct Workload<'a> {
    maps: &'a mut PinnedMaps,
    id: u64,
}

impl Drop for Workload<'_> {
    fn drop(&mut self) {
        let _ = self.maps.remove_workload(self.id);
        let _ = self.maps.clear_policy(SELFTEST_POLICY);
    }
}

fn observe(o: &Options) -> Result<Observed, String> {
    // The budgets run as the backstop's tail call: its link is theirs.
    let link = links_dir(&o.bpffs).join(SKB_EGRESS);
    if !link.exists() {
        return Err(format!(
            "the cgroup hooks are detached: no {SKB_EGRESS} link pinned at {}",
            link.display()
        ));
    }
    let mut maps = PinnedMaps::open(&o.bpffs).map_err(|e| e.to_string())?;
    let counters: HashMap<MapData, BudgetKey, BudgetCounter> =
        open(&maps_dir(&o.bpffs), BUDGET_DEST_MAP).map_err(|e| e.to_string())?;
    let dir = o.cgroup.join(format!("ringfence-selftest-{}", std::process::id()));
    let _ = std::fs::remove_dir(&dir);
    std::fs::create_dir(&dir).map_err(|e| format!("creating the throwaway cgroup {}: {e}", dir.display()))?;
    let _throwaway = Throwaway(dir.clone());
    let id = std::fs::metadata(&dir).map_err(|e| e.to_string())?.ino();
    maps.apply(SELFTEST_POLICY, &policy()?, None, &GeoInfo::default()).map_err(|e| e.to_string())?;
    maps.add_workload(id, SELFTEST_POLICY).map_err(|e| e.to_string())?;
    let _workload = Workload { maps: &mut maps, id };

    let sink = Sink::start().map_err(|e| format!("throwaway sink: {e}"))?;
    let mut key = BudgetKey { workload: id, addr: [0; 16], family: 4, kind: BUDGET_DEST };
    key.addr[..4].copy_from_slice(&[127, 0, 0, 1]);
    let started = Instant::now();
    let mut client = spawn_client(&dir, sink.addr)?;
    let mut spent_at = None;
    let status = loop {
        if spent_at.is_none() && counters.get(&key, 0).is_ok_and(|c| c.flags & BUDGET_EXHAUSTED != 0) {
            spent_at = Some(Instant::now());
        }
        if let Some(status) = client.try_wait().map_err(|e| e.to_string())? {
            break status;
        }
        if started.elapsed() > CLIENT_TIMEOUT {
            let _ = client.kill();
            break client.wait().map_err(|e| e.to_string())?;
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    let (received, last_byte) = sink.settled(Duration::from_millis(200));
    let spent_at = spent_at
        .or_else(|| counters.get(&key, 0).is_ok_and(|c| c.flags & BUDGET_EXHAUSTED != 0).then(Instant::now));
    // Whole microseconds: the value reads back exactly from its JSON text, which the node signs.
    let ms = |d: Duration| d.as_micros() as f64 / 1e3;
    Ok(Observed {
        setup_error: None,
        budget: BUDGET,
        received,
        exhausted: spent_at.is_some(),
        client_stopped: !status.success(),
        blocked_after_ms: spent_at.map(|t| ms(t.duration_since(started))),
        latency_ms: spent_at.zip(last_byte).map(|(t, b)| ms(t.saturating_duration_since(b))),
    })
}

/// Starts the client (`/proc/self/exe selftest-client ADDR BYTES`) inside the cgroup `dir`.
fn spawn_client(dir: &Path, addr: SocketAddr) -> Result<std::process::Child, String> {
    let procs =
        std::fs::OpenOptions::new().write(true).open(dir.join("cgroup.procs")).map_err(|e| e.to_string())?;
    let mut cmd = Command::new("/proc/self/exe");
    cmd.args([CLIENT_COMMAND, &addr.to_string(), &ATTEMPT.to_string()]);
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    // SAFETY: between fork and exec the child only writes to a descriptor opened before the fork
    // (async-signal-safe), moving itself into the throwaway cgroup.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, move || (&procs).write_all(b"0"));
    }
    cmd.spawn().map_err(|e| format!("starting the self-test client: {e}"))
}

/// The client: uploads `bytes` to `addr`; exit 0 if everything was taken, 3 if the kernel
/// stopped it (a write stalled for 1 s or was refused).
pub fn client(addr: &str, bytes: u64) -> i32 {
    let Ok(addr) = addr.parse::<SocketAddr>() else { return 2 };
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else { return 3 };
    let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
    let chunk = vec![b'x'; 64 << 10];
    let mut sent = 0u64;
    while sent < bytes {
        let n = chunk.len().min((bytes - sent) as usize);
        match s.write(&chunk[..n]) {
            Ok(w) => sent += w as u64,
            Err(_) => return 3,
        }
    }
    0
}

/// The throwaway sink: counts what arrives and when it last did.
struct Sink {
    addr: SocketAddr,
    state: Arc<Mutex<(u64, Option<Instant>)>>,
}

impl Sink {
    fn start() -> std::io::Result<Sink> {
        let l = TcpListener::bind("127.0.0.1:0")?;
        let addr = l.local_addr()?;
        let state = Arc::new(Mutex::new((0, None)));
        let shared = state.clone();
        std::thread::spawn(move || {
            for mut conn in l.incoming().flatten() {
                let shared = shared.clone();
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 256 << 10];
                    while let Ok(n) = conn.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        let mut s = shared.lock().expect("sink lock");
                        (s.0, s.1) = (s.0 + n as u64, Some(Instant::now()));
                    }
                });
            }
        });
        Ok(Sink { addr, state })
    }

    /// The bytes received once nothing arrived for `quiet`, and when the last one did.
    fn settled(&self, quiet: Duration) -> (u64, Option<Instant>) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let s = *self.state.lock().expect("sink lock");
            if s.1.is_none_or(|t| t.elapsed() >= quiet) || Instant::now() > deadline {
                return s;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
