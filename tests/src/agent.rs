//! Running the real `ringfence-agent` binary in tests, the demo and benchmarks: spawn it with
//! JSON logs, collect its log lines on a thread, wait for messages, signal and kill it.
use std::{
    ffi::OsStr,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Condvar, Mutex},
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};
use serde_json::Value;

/// Environment variable overriding where the agent binary is.
pub const AGENT_ENV: &str = "RINGFENCE_AGENT_BIN";

/// Locates `ringfence-agent`: `$RINGFENCE_AGENT_BIN`, else next to the current executable or one
/// directory up (test binaries live in `target/<profile>/deps`). Panics with a hint.
pub fn agent_bin() -> PathBuf {
    if let Some(p) = std::env::var_os(AGENT_ENV) {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe() for locating ringfence-agent");
    exe.ancestors().skip(1).take(2).map(|d| d.join("ringfence-agent")).find(|p| p.is_file()).unwrap_or_else(
        || {
            panic!(
                "ringfence-agent not found near {}; run `cargo build -p ringfence-agent` or set ${AGENT_ENV}",
                exe.display()
            )
        },
    )
}

/// What the reader thread collected: every line, and how many lines carried each message (so
/// waiting for the n-th "policy applied" does not rescan a log of many thousand events).
#[derive(Default)]
struct Log {
    /// The agent closed its log (it exited).
    closed: bool,
    lines: Vec<Value>,
    counts: std::collections::HashMap<String, usize>,
}

type Lines = Arc<(Mutex<Log>, Condvar)>;

fn lock(lines: &Lines) -> std::sync::MutexGuard<'_, Log> {
    // A panicking test thread must not poison the log for the reader thread.
    lines.0.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running agent and everything it logged so far.
pub struct AgentProc {
    child: Child,
    lines: Lines,
}

fn human(v: &Value) -> String {
    let s = |k: &str| {
        v.get(k).map(|x| x.as_str().map(str::to_string).unwrap_or_else(|| x.to_string())).unwrap_or_default()
    };
    if s("message") == "verdict" {
        let country = match s("country").as_str() {
            "" => String::new(),
            c => format!(" country {c}"),
        };
        format!(
            "  event | {:<10} {} {}:{} from pid {} ({}) rule {}{country} [generation {}]",
            s("verdict"),
            s("protocol"),
            s("dst"),
            s("port"),
            s("pid"),
            s("comm"),
            s("rule"),
            s("generation")
        )
    } else {
        let extra: Vec<String> = v
            .as_object()
            .map(|o| {
                o.iter()
                    .filter(|(k, _)| !["timestamp", "level", "message", "target"].contains(&k.as_str()))
                    .map(|(k, x)| {
                        format!("{k}={}", x.as_str().map(str::to_string).unwrap_or_else(|| x.to_string()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        format!("  agent | {} {} {}", s("level"), s("message"), extra.join(" "))
    }
}

impl AgentProc {
    /// `ringfence-agent run` on `cgroup`, pinning under `bpffs`, checking files every 0.2 s.
    pub fn spawn(bin: &Path, policy: &Path, cgroup: &Path, bpffs: &Path, echo: bool) -> AgentProc {
        Self::spawn_with::<&str>(bin, policy, cgroup, bpffs, &[], echo)
    }

    /// Like [`AgentProc::spawn`], with extra `run` arguments.
    pub fn spawn_with<S: AsRef<OsStr>>(
        bin: &Path,
        policy: &Path,
        cgroup: &Path,
        bpffs: &Path,
        extra: &[S],
        echo: bool,
    ) -> AgentProc {
        let mut args: Vec<&OsStr> = vec![
            "run".as_ref(),
            "--policy".as_ref(),
            policy.as_os_str(),
            "--cgroup".as_ref(),
            cgroup.as_os_str(),
            "--bpffs".as_ref(),
            bpffs.as_os_str(),
            "--watch-interval".as_ref(),
            "0.2".as_ref(),
        ];
        args.extend(extra.iter().map(AsRef::as_ref));
        Self::spawn_args(bin, &args, echo)
    }

    /// The agent with any arguments (after `--log-format json`).
    pub fn spawn_args<S: AsRef<OsStr>>(bin: &Path, args: &[S], echo: bool) -> AgentProc {
        Self::spawn_command(Command::new(bin), args, echo)
    }

    /// The agent from a prepared command (e.g. one that enters a network namespace).
    pub fn spawn_command<S: AsRef<OsStr>>(mut cmd: Command, args: &[S], echo: bool) -> AgentProc {
        let bin = PathBuf::from(cmd.get_program());
        let mut child = cmd
            .args(["--log-format", "json"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display()));
        let lines: Lines = Arc::default();
        let sink = lines.clone();
        let stderr = child.stderr.take().expect("piped stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let v = serde_json::from_str(&line)
                    .unwrap_or_else(|_| serde_json::json!({ "message": line, "raw": true }));
                if echo {
                    println!("{}", human(&v));
                }
                let mut log = lock(&sink);
                if let Some(m) = v["message"].as_str() {
                    *log.counts.entry(m.to_string()).or_default() += 1;
                }
                log.lines.push(v);
                drop(log);
                sink.1.notify_all();
            }
            lock(&sink).closed = true;
            sink.1.notify_all();
        });
        AgentProc { child, lines }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Every log line so far.
    pub fn lines(&self) -> Vec<Value> {
        lock(&self.lines).lines.clone()
    }

    /// The verdict events logged so far.
    pub fn events(&self) -> Vec<Value> {
        self.lines().into_iter().filter(|v| v["message"] == "verdict").collect()
    }

    /// How many lines have this message.
    pub fn count(&self, message: &str) -> usize {
        lock(&self.lines).counts.get(message).copied().unwrap_or(0)
    }

    /// Waits until `check` finds what it wants in the log; panics after `timeout` with the log.
    fn wait_until<T>(&self, what: &str, timeout: Duration, mut check: impl FnMut(&Log) -> Option<T>) -> T {
        let deadline = Instant::now() + timeout;
        let mut log = lock(&self.lines);
        loop {
            if let Some(found) = check(&log) {
                return found;
            }
            let now = Instant::now();
            if now >= deadline || log.closed {
                let text: Vec<String> =
                    log.lines.iter().rev().take(200).rev().map(Value::to_string).collect();
                let why =
                    if log.closed { "before it exited".to_string() } else { format!("within {timeout:?}") };
                drop(log);
                panic!("agent: no {what} {why}; last log lines:\n{}", text.join("\n"));
            }
            log = self.lines.1.wait_timeout(log, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// Waits for the first line matching `pred` (each line is examined once).
    pub fn wait_for(&self, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let mut next = 0;
        self.wait_until(what, timeout, |log| {
            let found = log.lines[next..].iter().find(|v| pred(v)).cloned();
            next = log.lines.len();
            found
        })
    }

    /// Waits for a line whose `message` is `message`; `None` if the agent exits first.
    pub fn wait_for_message_or_exit(&self, message: &str, timeout: Duration) -> Option<Value> {
        let mut next = 0;
        let deadline = Instant::now() + timeout;
        let mut log = lock(&self.lines);
        loop {
            if let Some(found) = log.lines[next..].iter().find(|v| v["message"] == message) {
                return Some(found.clone());
            }
            next = log.lines.len();
            if log.closed {
                return None;
            }
            let now = Instant::now();
            assert!(now < deadline, "agent: no {message:?} within {timeout:?} and still running");
            log = self.lines.1.wait_timeout(log, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// Waits for a line whose `message` is `message`.
    pub fn wait_for_message(&self, message: &str, timeout: Duration) -> Value {
        self.wait_for(&format!("{message:?}"), timeout, |v| v["message"] == message)
    }

    /// Waits until `count(message) >= n`.
    pub fn wait_for_count(&self, message: &str, n: usize, timeout: Duration) {
        self.wait_until(&format!("{n} x {message:?}"), timeout, |log| {
            (log.counts.get(message).copied().unwrap_or(0) >= n).then_some(())
        })
    }

    /// Waits for a verdict event matching `pred`.
    pub fn wait_for_event(&self, what: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_for(what, timeout, |v| v["message"] == "verdict" && pred(v))
    }

    fn signal(&self, sig: Signal) {
        let _ = kill(Pid::from_raw(self.pid()), sig);
    }

    /// Sends SIGHUP (policy reload).
    pub fn hup(&self) {
        self.signal(Signal::SIGHUP);
    }

    /// Sends SIGHUP and waits until the agent applied the policy once more.
    pub fn hup_and_wait(&self, timeout: Duration) {
        let applied = self.count("policy applied");
        self.hup();
        self.wait_for_count("policy applied", applied + 1, timeout);
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills the agent with SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait agent") {
                // The reader thread may still be collecting the last lines: wait for its EOF.
                self.wait_until("end of log", deadline.saturating_duration_since(Instant::now()), |log| {
                    log.closed.then_some(())
                });
                return st;
            }
            if Instant::now() >= deadline {
                self.kill9();
                panic!("agent did not exit within {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then waits for a clean exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(Signal::SIGTERM);
        self.wait_exit(Duration::from_secs(10))
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
