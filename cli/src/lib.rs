//! The `ringfence` operator command line: offline commands ([`offline`]: `policy check|explain`,
//! `geo lookup`) and the operator commands against a control plane ([`commands`]: join tokens,
//! the node inventory, policies, alerts, the audit log) over its HTTPS admin API ([`client`]).
//!
//! No server code: the control plane is reached over HTTPS only, so the offline commands build
//! without a database or an HTTP server.

mod accounts_ops;
mod audit_ops;
pub mod client;
pub mod commands;
pub mod evidence;
mod observe;
pub mod offline;
mod operator;
mod output;
mod policy_ops;

pub use client::{ApiClient, CliError, EXIT_NO_INPUT, EXIT_REFUSED, EXIT_UNAVAILABLE, EXIT_USAGE};
pub use commands::{
    AccountsCommand, AuditCommand, EvidenceCommand, NodesCommand, ObserveArgs, OperatorCommand,
    PolicyOperatorCommand, ServerArgs, TokenCommand,
};
pub use operator::run as run_operator;
pub use policy_ops::run as run_policy;
