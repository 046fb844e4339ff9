//! The Ringfence node agent: validates configuration, loads the eBPF programs, keeps the policy
//! in the kernel maps (with atomic reloads) and reports verdict events.
pub mod bpf;
pub mod clock;
pub mod config;
pub mod control;
pub mod enforcer;
pub mod error;
pub mod events;
pub mod exfil;
pub mod files;
pub mod flows;
pub mod geo;
pub mod identity;
pub mod logging;
pub mod map_batch;
pub mod maps;
pub mod metrics;
pub mod notify;
pub mod policy_load;
pub mod preflight;
pub mod remote;
pub mod report;
pub mod report_fqdn;
pub mod run;
pub mod selftest;
pub mod spool;
pub mod sys;
pub mod watch;
pub mod wg;
pub mod workloads;

pub use error::AgentError;
