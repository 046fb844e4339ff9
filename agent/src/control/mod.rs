//! The agent's control-plane client.
//!
//! - [`identity`]: the node's enrollment state in `<state-dir>/control/` (key, certificate, CA,
//!   pinned bundle-signing key, `node.json`).
//! - [`enroll`]: one-time enrollment with a join token (`POST /v1/enroll`).
//! - [`client`]: [`ControlClient`], mTLS calls to the agent endpoints, each with a timeout.
//! - [`bundles`]: [`BundleStore`], verification of signed bundles (pinned key, node id, no
//!   rollback) and the durable last good bundle.
//! - [`sync`]: [`run_sync`], the long-running task: bundle long-poll, apply handshake with the
//!   agent ([`agent_link`]), acknowledgements, and ([`periodic`]) certificate renewal, reports,
//!   ([`upload`]) event upload, ([`live`]) allow verdicts for the live flow view; [`wait`] lets
//!   each loop give way to shutdown.
//! - [`ControlError`] (in [`error`]): what can go wrong, with exit codes and retry advice.
//!
//! The logic is plain data in, data out; the I/O (HTTP, files) is thin and every call is bounded
//! by a timeout. Everything here is `Send`: [`run_sync`] can be given to `tokio::spawn`.

pub mod agent_link;
pub mod bundles;
pub mod client;
pub mod enroll;
pub mod error;
pub mod identity;
pub mod live;
pub mod periodic;
pub mod sync;
pub mod upload;
pub mod verdicts;
pub mod wait;

pub use agent_link::{link, AgentEnd, AgentLink, ApplyResult, ReportFn, SyncOptions};
pub use bundles::BundleStore;
pub use client::ControlClient;
pub use enroll::enroll;
pub use error::ControlError;
pub use identity::Identity;
pub use sync::run_sync;
pub use upload::{event_from_record, upload_events, Uploaded};
pub use verdicts::VerdictLane;
