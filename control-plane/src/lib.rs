//! Ringfence control plane: enrolls nodes with one-time join tokens and short-lived mTLS client
//! certificates, stores policies with versions and history, renders and signs a bundle per node
//! and pushes it by long-poll, stores agents' events once each and forwards them, and keeps a
//! hash-chained audit log. SQLite or PostgreSQL ([`db`]); HTTPS with TLS 1.3 only ([`tls`]).
//!
//! The `ringfence` operator command line is the `ringfence-cli` crate (`cli/`).

mod accept;
pub mod api;
pub mod checkpoint;
pub mod config;
pub mod conn;
pub mod db;
pub mod diff;
pub mod evidence;
pub mod flows;
pub mod forward;
pub mod heads;
pub mod hub;
pub mod ingest;
pub mod limits;
pub mod mesh;
pub mod metrics;
pub mod pki;
pub mod render;
pub mod server;
pub mod state_dir;
pub mod tls;

pub use config::{Config, ServeArgs};
pub use server::{start, Running, ServeError};
