//! Privileged lab helpers for Ringfence integration tests.
//!
//! Modelled on aya's integration-test helpers: every resource is owned by a
//! guard that removes it on `Drop`, even when the test panics.
//!
//! * [`NetNs`] – a named network namespace (`ip netns add`), deleted on drop.
//! * [`TestCgroup`] – a cgroup v2 directory; its processes are killed and the
//!   directory removed on drop.
//! * [`Bpffs`] – a private bpf filesystem mounted under `/run/ringfence-test`.
//! * [`Lab`] – node netns + world netns + veth pair + test cgroup + bpffs,
//!   with helpers to run the `lab-probe` binary inside the node netns *and*
//!   the test cgroup (where the agent's cgroup hooks apply).
//!
//! ```no_run
//! use ringfence_tests::{Lab, LoopReport, WORLD_V4};
//!
//! let mut lab = Lab::new("allow-https");          // finds lab-probe next to the test exe
//! lab.start_world_servers(&[443, 53]);
//! // start the agent: --cgroup lab.cgroup_path() --bpffs lab.bpffs_path()
//! lab.tcp(WORLD_V4[0], 443).assert_ok("https to allowed host");
//! lab.udp(WORLD_V4[2], 53).assert_eperm("dns to denied host");
//! let child = lab.spawn_probe(&["loop", "--duration-ms", "2000",
//!     "--target", "tcp:198.51.100.10:443:allow", "--target", "udp:[2001:db8:20::10]:53:deny"]);
//! let report = LoopReport::from_output(&child.wait_with_output().unwrap());
//! assert_eq!(report.total_wrong(), 0, "{report:?}");
//! ```
//!
//! Tests must run as root and serially (`--test-threads=1`). Failures panic
//! with a message naming the step that failed.
//!
//! Safety: test traffic stays inside namespaces created here and only uses
//! documentation prefixes (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24,
//! 2001:db8::/32); the root namespace, its routes and existing processes'
//! cgroups are never touched.

pub mod addrs;
pub mod agent;
pub mod bpffs;
pub mod browser;
pub mod capture;
pub mod cgroup;
pub mod cleanup;
pub mod control;
pub mod deploy_metrics;
pub mod dns_server;
pub mod lab;
pub mod netns;
pub mod postgres;
pub mod probe;
pub mod procfs;
pub mod scenario;
pub mod scrape;
pub mod sink;
pub mod skip;
pub mod spool;
mod util;
pub mod wg_lab;

pub use addrs::{is_documentation_addr, NODE_V4, NODE_V6, WORLD_GW_V4, WORLD_GW_V6, WORLD_V4, WORLD_V6};
pub use agent::{agent_bin, AgentProc};
pub use bpffs::Bpffs;
pub use capture::Capture;
pub use cgroup::{cgroup2_mount, TestCgroup};
pub use cleanup::cleanup_stale;
pub use control::ControlPlane;
pub use dns_server::{dnsmasq_bin, DnsServer};
pub use lab::Lab;
pub use netns::NetNs;
pub use probe::{probe_bin, LoopReport, ProbeResult, TargetStats};
pub use scenario::{policy_head, policy_head_with, workload_agent_args, Enforced};
pub use sink::{Received, Sink};
pub use skip::skip;
pub use util::monotonic_ns;
