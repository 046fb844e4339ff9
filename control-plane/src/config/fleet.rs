//! `serve` flags that bound what nodes and the network can make the control plane do: mesh
//! identity rules, per-node rate limits, connection limits and timeouts.

use std::time::Duration;

use clap::Args;

use super::values::duration;
use crate::mesh::MeshRules;

/// Mesh identity and resource-limit flags.
#[derive(Args, Clone, Debug)]
pub struct FleetArgs {
    /// Tunnel address pool of a region, REGION=CIDR (`*` for every region; repeatable, e.g. one
    /// IPv4 and one IPv6 pool): each node gets one host address of each of its region's pools at
    /// enrollment, the only addresses its peers route to it.
    #[arg(long = "wg-pool", value_name = "REGION=CIDR")]
    pub wg_pools: Vec<String>,
    /// Where a region's nodes may claim their WireGuard endpoint, REGION=CIDR (`*` for every
    /// region; repeatable). A region without a rule: only the address the node connects from.
    #[arg(long = "wg-endpoint-cidr", value_name = "REGION=CIDR")]
    pub wg_endpoint_cidrs: Vec<String>,
    /// Reports a node may send per minute (bursts of as many); more get 429 with Retry-After.
    #[arg(long, default_value_t = 12, value_name = "N")]
    pub report_rate: u32,
    /// Events a node may deliver per second on average; more get 429 with Retry-After.
    #[arg(long, default_value_t = 200, value_name = "N")]
    pub event_rate: u32,
    /// Events a node may deliver at once beyond its rate (at least 1000, the largest batch).
    #[arg(long, default_value_t = 2000, value_name = "N")]
    pub event_burst: u32,
    /// Open connections, at most (capped below the open-file limit; the shipped unit sets
    /// LimitNOFILE=65536). At the cap, an idle connection of the busiest source is closed for a
    /// new one.
    #[arg(long, default_value_t = 4096, value_name = "N")]
    pub max_connections: usize,
    /// Open connections from one source address, at most.
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub max_connections_per_source: usize,
    /// Time a client has to complete the TLS handshake.
    #[arg(long, default_value = "5s", value_name = "DURATION")]
    pub tls_handshake_timeout: String,
    /// A connection with no request in flight is closed after this long without traffic (and a
    /// request's headers must arrive within it).
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    pub idle_timeout: String,
    /// Bundle long-polls one node may hold at once; a newer one ends the oldest.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub max_long_polls_per_node: usize,
}

/// Validated [`FleetArgs`].
#[derive(Clone, Debug)]
pub struct FleetConfig {
    /// Pools and endpoint rules.
    pub mesh: MeshRules,
    /// Reports per minute and node.
    pub report_rate: u32,
    /// Events per second and node.
    pub event_rate: u32,
    /// Event burst per node.
    pub event_burst: u32,
    /// Connection cap.
    pub max_connections: usize,
    /// Connection cap per source address.
    pub max_connections_per_source: usize,
    /// TLS handshake timeout.
    pub tls_handshake_timeout: Duration,
    /// Idle connection timeout.
    pub idle_timeout: Duration,
    /// Long-polls per node.
    pub max_long_polls_per_node: usize,
}

impl FleetArgs {
    /// Checks every flag, pushing each problem.
    pub fn validate(&self, errors: &mut Vec<String>) -> FleetConfig {
        let mesh = MeshRules::parse(&self.wg_pools, &self.wg_endpoint_cidrs, errors);
        let mut at_least = |flag: &str, value: u64, min: u64| {
            if value < min {
                errors.push(format!("--{flag} {value}: at least {min}"));
            }
        };
        at_least("report-rate", self.report_rate.into(), 1);
        at_least("event-rate", self.event_rate.into(), 1);
        at_least("event-burst", self.event_burst.into(), 1000);
        at_least("max-connections", self.max_connections as u64, 16);
        at_least("max-connections-per-source", self.max_connections_per_source as u64, 1);
        at_least("max-long-polls-per-node", self.max_long_polls_per_node as u64, 1);
        let tls_handshake_timeout = duration(errors, "tls-handshake-timeout", &self.tls_handshake_timeout);
        let idle_timeout = duration(errors, "idle-timeout", &self.idle_timeout);
        for (flag, d) in [("tls-handshake-timeout", tls_handshake_timeout), ("idle-timeout", idle_timeout)] {
            if d < Duration::from_millis(100) && !errors.iter().any(|e| e.starts_with(&format!("--{flag}"))) {
                errors.push(format!("--{flag} {d:?}: at least 100ms"));
            }
        }
        FleetConfig {
            mesh,
            report_rate: self.report_rate,
            event_rate: self.event_rate,
            event_burst: self.event_burst,
            max_connections: self.max_connections,
            max_connections_per_source: self.max_connections_per_source.min(self.max_connections),
            tls_handshake_timeout,
            idle_timeout,
            max_long_polls_per_node: self.max_long_polls_per_node,
        }
    }
}
