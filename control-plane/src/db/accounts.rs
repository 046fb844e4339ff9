//! Console operator accounts (password hashes only), their sessions (token hashes only) and
//! alert acknowledgements.

use sqlx::{AnyPool, Row};

use super::pool::{DbError, Tx};

/// One operator account (without its hash).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AccountRow {
    /// Login name.
    pub name: String,
    /// `viewer`, `operator` or `admin`.
    pub role: String,
    /// Creation time.
    pub created_ms: i64,
}

/// A live session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRow {
    /// The account.
    pub account: String,
    /// Its role when the session began.
    pub role: String,
    /// The CSRF token writes must echo.
    pub csrf: String,
    /// Expiry.
    pub expires_ms: i64,
}

/// Creates an account; false if the name is taken.
pub async fn insert(tx: &mut Tx, name: &str, role: &str, password_hash: &str) -> Result<bool, DbError> {
    let done = sqlx::query(
        "INSERT INTO accounts (name, role, password_hash, created_ms) VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(role)
    .bind(password_hash)
    .bind(ringfence_proto::now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Removes an account and its sessions; false if there was none.
pub async fn remove(tx: &mut Tx, name: &str) -> Result<bool, DbError> {
    sqlx::query("DELETE FROM sessions WHERE account = $1").bind(name).execute(&mut **tx).await?;
    let done = sqlx::query("DELETE FROM accounts WHERE name = $1").bind(name).execute(&mut **tx).await?;
    Ok(done.rows_affected() == 1)
}

/// Every account, by name.
pub async fn list(pool: &AnyPool) -> Result<Vec<AccountRow>, DbError> {
    let rows =
        sqlx::query("SELECT name, role, created_ms FROM accounts ORDER BY name").fetch_all(pool).await?;
    rows.iter()
        .map(|r| {
            Ok(AccountRow {
                name: r.try_get("name")?,
                role: r.try_get("role")?,
                created_ms: r.try_get("created_ms")?,
            })
        })
        .collect()
}

/// An account's role and password hash.
pub async fn credentials(pool: &AnyPool, name: &str) -> Result<Option<(String, String)>, DbError> {
    let row = sqlx::query("SELECT role, password_hash FROM accounts WHERE name = $1")
        .bind(name)
        .fetch_optional(pool)
        .await?;
    row.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
}

/// Stores a session (and forgets expired ones).
pub async fn insert_session(tx: &mut Tx, token_hash: &str, session: &SessionRow) -> Result<(), DbError> {
    sqlx::query("DELETE FROM sessions WHERE expires_ms < $1")
        .bind(ringfence_proto::now_ms())
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "INSERT INTO sessions (token_hash, account, role, csrf, expires_ms) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(token_hash)
    .bind(&session.account)
    .bind(&session.role)
    .bind(&session.csrf)
    .bind(session.expires_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The unexpired session with this token hash.
pub async fn session(pool: &AnyPool, token_hash: &str) -> Result<Option<SessionRow>, DbError> {
    let row = sqlx::query(
        "SELECT account, role, csrf, expires_ms FROM sessions WHERE token_hash = $1 AND expires_ms > $2",
    )
    .bind(token_hash)
    .bind(ringfence_proto::now_ms())
    .fetch_optional(pool)
    .await?;
    row.map(|r| {
        Ok(SessionRow {
            account: r.try_get("account")?,
            role: r.try_get("role")?,
            csrf: r.try_get("csrf")?,
            expires_ms: r.try_get("expires_ms")?,
        })
    })
    .transpose()
}

/// Ends a session.
pub async fn remove_session(tx: &mut Tx, token_hash: &str) -> Result<(), DbError> {
    sqlx::query("DELETE FROM sessions WHERE token_hash = $1").bind(token_hash).execute(&mut **tx).await?;
    Ok(())
}

/// Acknowledges an event; false if it was already acknowledged.
pub async fn acknowledge(tx: &mut Tx, node_id: &str, event_id: &str, account: &str) -> Result<bool, DbError> {
    let done = sqlx::query(
        "INSERT INTO alert_acks (node_id, event_id, account, time_ms) VALUES ($1, $2, $3, $4) ON CONFLICT (node_id, event_id) DO NOTHING",
    )
    .bind(node_id)
    .bind(event_id)
    .bind(account)
    .bind(ringfence_proto::now_ms())
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}
