//! A byte-counting receiver in the world namespace (`lab-probe sink`), killed on drop: the
//! budget tests' count at the receiver.
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::lab::Lab;

/// Totals the sink has printed: TCP and UDP payload bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Received {
    pub tcp: u64,
    pub udp: u64,
}

pub struct Sink {
    child: Child,
    last: Arc<Mutex<(Received, Instant)>>,
    history: Arc<Mutex<Vec<(Instant, Received)>>>,
}

impl Sink {
    /// Starts `lab-probe sink` in the lab's world namespace on `tcp` (and `udp`) and waits until
    /// it is ready.
    pub fn start(lab: &Lab, tcp: u16, udp: Option<u16>) -> Sink {
        let mut cmd = lab.world_ns().command(lab.probe_path());
        cmd.args(["sink", "--tcp", &tcp.to_string()]);
        if let Some(u) = udp {
            cmd.args(["--udp", &u.to_string()]);
        }
        let mut child = cmd.stdout(Stdio::piped()).stdin(Stdio::null()).spawn().expect("spawn sink");
        let mut lines = BufReader::new(child.stdout.take().expect("sink stdout")).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        assert_eq!(first.trim(), "ready", "sink did not start");
        let last = Arc::new(Mutex::new((Received::default(), Instant::now())));
        let shared = last.clone();
        let history = Arc::new(Mutex::new(Vec::new()));
        let log = history.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
                let r = Received { tcp: v["tcp"].as_u64().unwrap_or(0), udp: v["udp"].as_u64().unwrap_or(0) };
                let now = Instant::now();
                *shared.lock().expect("sink lock") = (r, now);
                log.lock().expect("sink lock").push((now, r));
            }
        });
        Sink { child, last, history }
    }

    /// The totals now.
    pub fn received(&self) -> Received {
        self.last.lock().expect("sink lock").0
    }

    /// The most TCP bytes that arrived within any `window` (from the sink's 10 ms reports).
    pub fn max_tcp_in(&self, window: Duration) -> u64 {
        let h = self.history.lock().expect("sink lock");
        let mut best = 0;
        let mut start = 0;
        for end in 0..h.len() {
            while h[end].0.duration_since(h[start].0) > window {
                start += 1;
            }
            // Bytes reported in (start, end]: the report at `start` is the baseline.
            best = best.max(h[end].1.tcp - h[start].1.tcp);
        }
        best
    }

    /// The totals once nothing more has arrived for `quiet` (within `timeout`), counted from
    /// the call too: bytes that reached the sink just before it may not be in a report yet (the
    /// sink reports every 10 ms), and an older report must not pass for the settled total.
    pub fn settled(&self, quiet: Duration, timeout: Duration) -> Received {
        let called = Instant::now();
        let deadline = called + timeout;
        loop {
            let (r, at) = *self.last.lock().expect("sink lock");
            if at.elapsed() >= quiet && called.elapsed() >= quiet {
                return r;
            }
            assert!(Instant::now() < deadline, "the sink kept receiving for {timeout:?}: {r:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
