//! Storage: one schema ([`migrations`]) on SQLite (default, one file) or PostgreSQL (several
//! replicas sharing one database), through sqlx's `Any` driver so every query is written once.
//!
//! Every write runs in a [`Tx`] from [`Db::begin`], which serializes writers: on PostgreSQL with a
//! transaction-scoped advisory lock (replicas included), on SQLite with a one-connection pool. The
//! audit record of a change is written in the same transaction as the change. Changes that alter
//! bundles bump the `generation` counter and, on PostgreSQL, `NOTIFY` [`CHANGES_CHANNEL`] at commit.

pub mod accounts;
pub mod audit;
pub mod event_queries;
pub mod events;
pub mod history;
mod migrations;
pub mod nodes;
pub mod policies;
mod pool;
pub mod tokens;

pub use nodes::NodeRow;
pub use policies::{NewPolicy, PolicyRow};
pub use pool::{Backend, Db, DbError, Tx, CHANGES_CHANNEL};
pub use tokens::{TokenRow, TokenState};

impl Db {
    /// Connects and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<Db, DbError> {
        let db = Db::open(url).await?;
        migrations::migrate(&db).await?;
        Ok(db)
    }
}
