//! What `ringfence-agent run` was asked to do.
use std::{path::PathBuf, time::Duration};

/// Arguments of `run`.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub policy: PathBuf,
    pub cgroup: PathBuf,
    pub bpffs: PathBuf,
    /// Geo-IP databases (MaxMind DB format): none, one with both families, or one per family.
    pub geoip_db: Vec<PathBuf>,
    /// Dotted field holding the country code; `None` detects it.
    pub geoip_field: Option<String>,
    /// Uplink interfaces (in the agent's network namespace) that get the packet path.
    pub interfaces: Vec<String>,
    /// Flows without a packet for this long are removed from the flow table.
    pub flow_idle_timeout: Duration,
    /// How often the policy and database files are checked for changes.
    pub watch_interval: Duration,
    /// How long to keep draining events after a shutdown signal.
    pub grace: Duration,
}
