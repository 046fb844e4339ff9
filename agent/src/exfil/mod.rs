//! Weight-exfiltration detection: a sans-IO core (`detector`) fed with flow-counter snapshots and
//! checkpoint-file observations, producing alerts. The agent's I/O shell (polling the flow map,
//! watching checkpoint directories, delivering alerts) is built on top of it.
pub mod checkpoints;
pub mod detector;
pub mod spool;
#[cfg(test)]
mod detector_tests;

pub use checkpoints::{shard_group, CheckpointIndex};
pub use detector::{Alert, AlertKind, Detector, ExfilRules, FlowSample, Severity};
pub use spool::{Spool, SpoolError, SpoolLimits};
