//! A packet capture on the world side of the lab's veth (`lab-probe capture`): the oracle of the
//! isolation tests. It sees every frame that crossed the wire, whatever the receiving stack
//! then does with it (drop a source-routed packet, reject a bad checksum).
//!
//! "Nothing arrived" is shown without sleeping: after an attempt that must be blocked, the test
//! sends the same thing from an unenforced cgroup with a control marker and waits for the
//! capture to see it; frames on one veth arrive in order, so anything the blocked attempt let
//! out would have been seen before the control.
use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    process::{Child, Stdio},
    sync::{mpsc, Arc, Condvar, Mutex},
    time::{Duration, Instant},
};

use crate::Lab;

type Seen = Arc<(Mutex<HashMap<String, Vec<String>>>, Condvar)>;

/// A running capture and the marker sightings so far (with what followed each marker).
pub struct Capture {
    child: Child,
    seen: Seen,
}

impl Capture {
    /// Starts `lab-probe capture` on the world veth for `markers` and waits until it listens.
    pub fn start(lab: &Lab, markers: &[&str]) -> Capture {
        let (_, world_if) = lab.veth_names();
        let mut cmd = lab.world_ns().command(lab.probe_path());
        cmd.args(["capture", world_if]);
        for m in markers {
            cmd.args(["--marker", m]);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn capture: {e}"));
        let stdout = child.stdout.take().expect("capture stdout");
        let seen: Seen = Arc::default();
        let sink = seen.clone();
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line == "ready" {
                    let _ = ready_tx.send(());
                    continue;
                }
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
                let marker = v["seen"].as_str().unwrap_or_default().to_string();
                let after = v["after"].as_str().unwrap_or_default().to_string();
                sink.0.lock().unwrap_or_else(|e| e.into_inner()).entry(marker).or_default().push(after);
                sink.1.notify_all();
            }
        });
        ready_rx.recv_timeout(Duration::from_secs(10)).expect("capture did not start within 10 s");
        Capture { child, seen }
    }

    /// Frames seen so far carrying `marker`.
    pub fn count(&self, marker: &str) -> usize {
        self.seen.0.lock().unwrap_or_else(|e| e.into_inner()).get(marker).map_or(0, Vec::len)
    }

    /// What followed `marker` in each frame that carried it (up to 40 printable bytes).
    pub fn payloads(&self, marker: &str) -> Vec<String> {
        self.seen.0.lock().unwrap_or_else(|e| e.into_inner()).get(marker).cloned().unwrap_or_default()
    }

    /// Waits until `marker` was seen at least `n` times; panics after `timeout`.
    pub fn wait_for(&self, marker: &str, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut seen = self.seen.0.lock().unwrap_or_else(|e| e.into_inner());
        while seen.get(marker).map_or(0, Vec::len) < n {
            let now = Instant::now();
            assert!(
                now < deadline,
                "capture: {marker} seen {} times, not {n}, within {timeout:?}",
                seen.get(marker).map_or(0, Vec::len)
            );
            seen = self.seen.1.wait_timeout(seen, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
