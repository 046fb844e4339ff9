//! [`EventQueue`]: the agent's events on their way to the control plane, in two spools.
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::segments::{SpoolError, SpoolLimits};
use super::store::Spool;

/// The event spools to upload, shared with the code that appends to them. Call
/// `notify.notify_one()` after appending to upload at once instead of within a second.
///
/// Two lanes, each its own spool with its own size cap: alerts (exfiltration alerts, plaintext
/// drops), uploaded first, and denials, which can never evict an alert.
#[derive(Clone)]
pub struct EventQueue {
    /// The alert lane (locked briefly, from a blocking thread).
    pub spool: Arc<Mutex<Spool>>,
    /// The denial lane.
    pub denials: Arc<Mutex<Spool>>,
    /// Wakes the uploader.
    pub notify: Arc<Notify>,
    /// Allow verdicts for the live flow view (memory only, best effort).
    pub live: Arc<super::live::LiveFlows>,
}

/// The alert lane's directory inside the state directory.
pub const ALERT_SPOOL_DIR: &str = "spool";
/// The denial lane's directory inside the state directory.
pub const DENIAL_SPOOL_DIR: &str = "spool-denials";

impl EventQueue {
    /// Opens both lanes in `state_dir`: `spool/` (alerts, 256 MiB) and `spool-denials/` (64 MiB).
    pub fn open(state_dir: &Path) -> Result<EventQueue, SpoolError> {
        let alerts = Spool::open(&state_dir.join(ALERT_SPOOL_DIR), SpoolLimits::default())?;
        let limits = SpoolLimits { max_total_bytes: 64 << 20, ..SpoolLimits::default() };
        let denials = Spool::open(&state_dir.join(DENIAL_SPOOL_DIR), limits)?;
        Ok(EventQueue {
            spool: Arc::new(Mutex::new(alerts)),
            denials: Arc::new(Mutex::new(denials)),
            notify: Arc::new(Notify::new()),
            live: Arc::default(),
        })
    }
}
