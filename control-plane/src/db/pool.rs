//! The connection pool, write transactions and what every table module shares: the backend,
//! the error type and column readers. A leaf: it uses no other storage module.

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

/// The PostgreSQL notification channel announcing a new generation.
pub const CHANGES_CHANNEL: &str = "ringfence_changes";
/// The advisory lock key that serializes writers on PostgreSQL.
const WRITE_LOCK: i64 = 0x5269_6e67;

/// Which database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file.
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database refused or failed a query.
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    /// Stored data that does not parse (edited by hand?).
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// The URL names no supported database.
    #[error("unsupported database URL {0:?} (expected sqlite:///path/file.db or postgres://...)")]
    UnsupportedUrl(String),
}

/// The pool and what it talks to.
#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    url: String,
}

/// A write transaction (writers serialized).
pub type Tx = sqlx::Transaction<'static, sqlx::Any>;

impl Backend {
    /// The backend a URL names.
    pub fn of_url(url: &str) -> Option<Backend> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }
}

impl Db {
    /// Connects without touching the schema ([`super::Db::connect`] also migrates it).
    pub(super) async fn open(url: &str) -> Result<Db, DbError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(url).ok_or_else(|| DbError::UnsupportedUrl(url.into()))?;
        let (connect_url, max) = match backend {
            // One connection: SQLite has one writer anyway, and no transaction can then fail
            // with SQLITE_BUSY when it upgrades from reading to writing.
            Backend::Sqlite if url.contains('?') => (url.to_owned(), 1),
            Backend::Sqlite => (format!("{url}?mode=rwc"), 1),
            Backend::Postgres => (url.to_owned(), 16),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(std::time::Duration::from_secs(30))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL with synchronous=NORMAL: no fsync per commit (acks and events are
                        // frequent writes); a power cut may lose the last commits, never corrupts.
                        sqlx::query("PRAGMA journal_mode = WAL").execute(&mut *conn).await?;
                        sqlx::query("PRAGMA synchronous = NORMAL").execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
            .connect(&connect_url)
            .await?;
        Ok(Db { pool, backend, url: url.to_owned() })
    }

    /// The pool (tests use it to edit rows behind the server's back).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Which database.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The URL it was opened with.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Starts a write transaction; on PostgreSQL waits for the cluster-wide writer lock.
    pub async fn begin(&self) -> Result<Tx, DbError> {
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT 1 AS locked FROM pg_advisory_xact_lock($1)")
                .bind(WRITE_LOCK)
                .fetch_one(&mut *tx)
                .await?;
        }
        Ok(tx)
    }

    /// Takes the next generation number in `tx` and announces it at commit (PostgreSQL).
    pub async fn bump_generation(&self, tx: &mut Tx) -> Result<i64, DbError> {
        let row =
            sqlx::query("UPDATE counters SET value = value + 1 WHERE name = 'generation' RETURNING value")
                .fetch_one(&mut **tx)
                .await?;
        let generation: i64 = row.try_get(0)?;
        if self.backend == Backend::Postgres {
            sqlx::query(&format!("NOTIFY {CHANGES_CHANNEL}")).execute(&mut **tx).await?;
        }
        Ok(generation)
    }

    /// The current generation.
    pub async fn generation(&self) -> Result<i64, DbError> {
        let row =
            sqlx::query("SELECT value FROM counters WHERE name = 'generation'").fetch_one(&self.pool).await?;
        Ok(row.try_get(0)?)
    }
}

/// Rows per multi-row INSERT of `params_per_row` parameters each. PostgreSQL: many (one round
/// trip per statement). SQLite: few, because binding is quadratic in a statement's parameters
/// (sqlx asks `sqlite3_bind_parameter_name` for each, and SQLite finds each name by a linear
/// scan): at 400 rows of 8 that scan was most of the time spent storing events.
pub(super) fn rows_per_statement(tx: &Tx, params_per_row: usize) -> usize {
    let params = if tx.backend_name() == <sqlx::Sqlite as sqlx::Database>::NAME { 256 } else { 3200 };
    (params / params_per_row.max(1)).max(1)
}

/// Reads a JSON text column.
pub(super) fn json_col<T: serde::de::DeserializeOwned>(row: &AnyRow, col: &str) -> Result<T, DbError> {
    let text: String = row.try_get(col)?;
    serde_json::from_str(&text).map_err(|e| DbError::Corrupt(format!("column {col}: {e}")))
}

/// Reads a nullable non-negative integer column as u64.
pub(super) fn u64_col(row: &AnyRow, col: &str) -> Result<Option<u64>, DbError> {
    let v: Option<i64> = row.try_get(col)?;
    Ok(v.map(|v| v.max(0) as u64))
}
