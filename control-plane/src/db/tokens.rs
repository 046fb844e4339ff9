//! One-time join tokens. Only the SHA-256 of a token is stored.

use ringfence_proto::api::Labels;
use sqlx::Row;

use super::pool::{json_col, DbError, Tx};

/// A stored token.
#[derive(Clone, Debug)]
pub struct TokenRow {
    /// SHA-256 (hex) of the token.
    pub hash: String,
    /// Region of the node that enrolls with it.
    pub region: String,
    /// Labels of that node.
    pub labels: Labels,
    /// Expiry.
    pub expires_ms: i64,
    /// When it was used, if it was.
    pub used_ms: Option<i64>,
}

/// Whether a presented token may enroll a node now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenState {
    /// Never issued (or mistyped).
    Unknown,
    /// Already used (tokens are one-time).
    Used,
    /// Past its expiry.
    Expired,
    /// Usable.
    Valid,
}

impl TokenRow {
    /// Its state at `now_ms`.
    pub fn state(&self, now_ms: i64) -> TokenState {
        if self.used_ms.is_some() {
            TokenState::Used
        } else if self.expires_ms <= now_ms {
            TokenState::Expired
        } else {
            TokenState::Valid
        }
    }
}

/// Stores a new token.
pub async fn insert(
    tx: &mut Tx,
    hash: &str,
    region: &str,
    labels: &Labels,
    expires_ms: i64,
) -> Result<(), DbError> {
    sqlx::query(
        "INSERT INTO tokens (hash, region, labels, created_ms, expires_ms) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(hash)
    .bind(region)
    .bind(serde_json::to_string(labels).expect("labels serialize"))
    .bind(ringfence_proto::now_ms())
    .bind(expires_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The token with this hash.
pub async fn get(tx: &mut Tx, hash: &str) -> Result<Option<TokenRow>, DbError> {
    let row = sqlx::query("SELECT hash, region, labels, expires_ms, used_ms FROM tokens WHERE hash = $1")
        .bind(hash)
        .fetch_optional(&mut **tx)
        .await?;
    row.map(|row| {
        Ok(TokenRow {
            hash: row.try_get("hash")?,
            region: row.try_get("region")?,
            labels: json_col(&row, "labels")?,
            expires_ms: row.try_get("expires_ms")?,
            used_ms: row.try_get("used_ms")?,
        })
    })
    .transpose()
}

/// Marks the token used by `node_id`; false if it was used meanwhile.
pub async fn consume(tx: &mut Tx, hash: &str, node_id: &str, now_ms: i64) -> Result<bool, DbError> {
    let done =
        sqlx::query("UPDATE tokens SET used_ms = $1, node_id = $2 WHERE hash = $3 AND used_ms IS NULL")
            .bind(now_ms)
            .bind(node_id)
            .bind(hash)
            .execute(&mut **tx)
            .await?;
    Ok(done.rows_affected() == 1)
}
