//! Stored policies: every version kept, newest per selector in force.

use ringfence_proto::api::{PolicyRecord, Selector};
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row};

use super::pool::{json_col, DbError, Tx};

/// One stored version, with what bundles need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyRow {
    /// The record (with `policy_yaml`).
    pub record: PolicyRecord,
    /// The generation it was stored at.
    pub generation: i64,
}

/// A version to store.
pub struct NewPolicy<'a> {
    /// `metadata.name`.
    pub name: &'a str,
    /// Which nodes.
    pub selector: &'a Selector,
    /// The document.
    pub yaml: &'a str,
    /// Its SHA-256 (hex).
    pub sha256: &'a str,
    /// Who.
    pub author: &'a str,
    /// Why.
    pub comment: Option<&'a str>,
    /// The version re-applied, for a rollback.
    pub rollback_of: Option<u64>,
}

const COLUMNS: &str =
    "version, name, selector, yaml, sha256, author, comment, rollback_of, created_ms, generation";

fn from_row(row: &AnyRow, with_yaml: bool) -> Result<PolicyRow, DbError> {
    let version: i64 = row.try_get("version")?;
    let rollback_of: Option<i64> = row.try_get("rollback_of")?;
    Ok(PolicyRow {
        record: PolicyRecord {
            version: version as u64,
            selector: json_col(row, "selector")?,
            author: row.try_get("author")?,
            created_ms: row.try_get("created_ms")?,
            sha256: row.try_get("sha256")?,
            comment: row.try_get("comment")?,
            rollback_of: rollback_of.map(|v| v as u64),
            name: row.try_get("name")?,
            policy_yaml: if with_yaml { Some(row.try_get("yaml")?) } else { None },
        },
        generation: row.try_get("generation")?,
    })
}

/// Stores the next version; returns it.
pub async fn insert(tx: &mut Tx, new: &NewPolicy<'_>, generation: i64) -> Result<PolicyRow, DbError> {
    let next: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) + 1 FROM policies")
        .fetch_one(&mut **tx)
        .await?
        .try_get(0)?;
    let now = ringfence_proto::now_ms();
    sqlx::query(&format!(
        "INSERT INTO policies ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
    ))
    .bind(next)
    .bind(new.name)
    .bind(serde_json::to_string(new.selector).expect("selector serializes"))
    .bind(new.yaml)
    .bind(new.sha256)
    .bind(new.author)
    .bind(new.comment)
    .bind(new.rollback_of.map(|v| v as i64))
    .bind(now)
    .bind(generation)
    .execute(&mut **tx)
    .await?;
    Ok(PolicyRow {
        record: PolicyRecord {
            version: next as u64,
            selector: new.selector.clone(),
            author: new.author.into(),
            created_ms: now,
            sha256: new.sha256.into(),
            comment: new.comment.map(Into::into),
            rollback_of: new.rollback_of,
            name: new.name.into(),
            policy_yaml: Some(new.yaml.into()),
        },
        generation,
    })
}

/// One version, with its YAML.
pub async fn get<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(
    executor: E,
    version: u64,
) -> Result<Option<PolicyRow>, DbError> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM policies WHERE version = $1"))
        .bind(version as i64)
        .fetch_optional(executor)
        .await?;
    row.map(|r| from_row(&r, true)).transpose()
}

/// Every version, newest first, without YAML.
pub async fn history(pool: &AnyPool) -> Result<Vec<PolicyRecord>, DbError> {
    let rows =
        sqlx::query(&format!("SELECT {COLUMNS} FROM policies ORDER BY version DESC")).fetch_all(pool).await?;
    rows.iter().map(|r| from_row(r, false).map(|p| p.record)).collect()
}

/// The newest version of each selector and name (older versions of a policy can never be
/// chosen), newest first, with YAML; see `heads::Heads::split` for which are in force.
pub async fn heads(pool: &AnyPool) -> Result<Vec<PolicyRow>, DbError> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM policies p WHERE version = \
         (SELECT MAX(version) FROM policies q WHERE q.selector = p.selector AND q.name = p.name) \
         ORDER BY version DESC"
    ))
    .fetch_all(pool)
    .await?;
    rows.iter().map(|r| from_row(r, true)).collect()
}

/// The newest version with exactly this selector (and this name, if given), before `before`.
pub async fn previous_with_selector(
    tx: &mut Tx,
    selector: &Selector,
    name: Option<&str>,
    before: u64,
) -> Result<Option<PolicyRow>, DbError> {
    let by_name = if name.is_some() { "AND name = $3 " } else { "" };
    let sql = format!(
        "SELECT {COLUMNS} FROM policies WHERE selector = $1 AND version < $2 {by_name}ORDER BY version DESC LIMIT 1"
    );
    let row = sqlx::query(&sql)
        .bind(serde_json::to_string(selector).expect("selector serializes"))
        .bind(before as i64);
    let row = match name {
        Some(n) => row.bind(n),
        None => row,
    }
    .fetch_optional(&mut **tx)
    .await?;
    row.map(|r| from_row(&r, true)).transpose()
}
