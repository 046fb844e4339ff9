//! Operator accounts (admin role or the admin credential): list, add, remove. Every change is
//! audited; passwords are stored as Argon2id hashes only.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::passwords;
use super::principal::{Reader, Role, Writer};
use crate::api::auth::{JsonBody, PathArg};
use crate::api::error::{ApiError, ApiResult};
use crate::api::state::AppState;
use crate::db::{self, accounts::AccountRow};

/// `POST /console/api/accounts`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAccount {
    name: String,
    role: Role,
    password: String,
}

/// What is wrong with an account name, if anything.
fn name_problem(name: &str) -> Option<String> {
    let ok_chars = name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
    if name.is_empty() || name.len() > 64 || !ok_chars {
        Some(format!("account name {name:?}: 1 to 64 of a-z, 0-9, '.', '_', '-'"))
    } else if name == "admin" {
        Some("\"admin\" is the admin credential's name; choose another".into())
    } else {
        None
    }
}

/// `GET /console/api/accounts`.
pub async fn list(State(state): State<Arc<AppState>>, Reader(p): Reader) -> ApiResult<Json<Vec<AccountRow>>> {
    p.require(Role::Admin)?;
    Ok(Json(db::accounts::list(state.db.pool()).await?))
}

/// `POST /console/api/accounts`.
pub async fn add(
    State(state): State<Arc<AppState>>,
    Writer(p): Writer,
    JsonBody(req): JsonBody<NewAccount>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    p.require(Role::Admin)?;
    if let Some(problem) = name_problem(&req.name) {
        return Err(ApiError::bad_request(problem));
    }
    let hash = passwords::hash(req.password).await?;
    let mut tx = state.db.begin().await?;
    if !db::accounts::insert(&mut tx, &req.name, req.role.as_str(), &hash).await? {
        drop(tx);
        return Err(ApiError::new(StatusCode::CONFLICT, format!("account {} exists", req.name)));
    }
    let details = json!({"account": req.name, "role": req.role.as_str()});
    db::audit::append(&mut tx, &p.actor(), "account.add", details.clone()).await?;
    tx.commit().await.map_err(db::DbError::from)?;
    tracing::info!(account = req.name, role = req.role.as_str(), by = p.name, "console account added");
    Ok((StatusCode::CREATED, Json(details)))
}

/// `DELETE /console/api/accounts/{name}`: also ends its sessions.
pub async fn remove(
    State(state): State<Arc<AppState>>,
    Writer(p): Writer,
    PathArg(name): PathArg<String>,
) -> ApiResult<StatusCode> {
    p.require(Role::Admin)?;
    let mut tx = state.db.begin().await?;
    if !db::accounts::remove(&mut tx, &name).await? {
        drop(tx);
        return Err(ApiError::not_found(format!("no account {name}")));
    }
    db::audit::append(&mut tx, &p.actor(), "account.remove", json!({"account": name})).await?;
    tx.commit().await.map_err(db::DbError::from)?;
    tracing::info!(account = name, by = p.name, "console account removed");
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::name_problem;

    #[test]
    fn account_names() {
        assert!(name_problem("alice.b-1_x").is_none());
        for bad in ["", "Alice", "a b", "<script>", "admin", &"a".repeat(65)] {
            assert!(name_problem(bad).is_some(), "{bad:?}");
        }
    }
}
