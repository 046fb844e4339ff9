//! Durable local event spool: events survive control-plane outages and agent crashes.
//!
//! A directory (created 0700) of `spool-00000001.jsonl`, `spool-00000002.jsonl`, …: one JSON record
//! per line, fsynced before `append` returns. Files rotate at `max_file_bytes`; past
//! `max_total_bytes` the oldest whole files are deleted and their undelivered records counted as
//! dropped. Delivery is at-least-once: an uploader reads a [`Batch`] ([`Spool::read_batch`]),
//! sends it, then acknowledges it ([`Spool::ack_batch`]); records carry a string `"id"` for the
//! receiver to deduplicate a resend after a crash.
//!
//! Reading never re-parses what was delivered: the cursor (`dir/cursor`: file, line and byte
//! offset, replaced atomically) says where the next undelivered record starts, and a batch is read
//! from there, at most `limit` records. A line that is not a JSON object with a string `"id"` is
//! quarantined: copied to `dir/quarantine.jsonl`, counted, logged, and passed over, so delivery
//! continues. A corrupt or impossible cursor is moved aside and rebuilt (delivery restarts at the
//! oldest file still there; the receiver drops the repeats): never fatal.
//!
//! Parts: [`segments`] (files, limits, errors; a leaf), [`cursor`], [`store`] ([`Spool`]: open,
//! append), [`reader`] (batches, acknowledgement, quarantine), [`queue`] ([`EventQueue`]: the
//! agent's two lanes, shared by the code that appends and the control-plane uploader), [`live`]
//! ([`LiveFlows`]: allow verdicts for the live flow view, in memory, bounded, never spooled).
pub mod cursor;
pub mod live;
pub mod queue;
pub mod reader;
pub mod segments;
pub mod store;
#[cfg(test)]
mod tests;

pub use cursor::Cursor;
pub use live::LiveFlows;
pub use queue::{EventQueue, ALERT_SPOOL_DIR, DENIAL_SPOOL_DIR};
pub use reader::{Batch, QUARANTINE};
pub use segments::{SpoolError, SpoolLimits};
pub use store::Spool;
