//! Weight-exfiltration detection: a sans-IO core (`detector`) fed with flow-counter snapshots and
//! checkpoint-file observations, producing alerts; and the agent's shell around it: the monitor
//! (policy rules, approved sinks, process attribution), the checkpoint watcher, the kernel's
//! block table; `budget` turns the kernel's budget crossings into alerts; alerts go to the durable spool ([`crate::spool`]).
pub mod attribution;
pub mod blocks;
pub mod budget;
pub mod checkpoints;
pub mod detector;
#[cfg(test)]
mod detector_tests;
pub mod monitor;
pub mod shell;
pub mod watcher;

pub use attribution::{Owners, Process};
pub use blocks::{Block, BlockTable, Selector};
pub use checkpoints::{shard_group, CheckpointIndex};
pub use detector::{Alert, AlertKind, Detector, ExfilRules, FlowId, FlowSample, Severity};
pub use monitor::{AlertRecord, ExfilMonitor};
pub use shell::ExfilShell;
