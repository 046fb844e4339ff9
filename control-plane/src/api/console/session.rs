//! Logging in (an account's name and password, or the admin credential), the session it
//! starts (an HttpOnly, Secure, SameSite=Strict cookie; the CSRF token in the answer), and
//! logging out. Logins are rate limited per source address; successful ones are audited.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::passwords;
use super::principal::{token_hash, Principal, Reader, Role, Writer, SESSION_COOKIE};
use crate::api::auth::{constant_time_eq, JsonBody, PeerAddr};
use crate::api::error::{ApiError, ApiResult};
use crate::api::state::AppState;
use crate::db::{self, accounts::SessionRow};

/// How long a session lasts.
pub const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// `POST /console/api/login`: `username` and `password`, or `token` (the admin credential).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    token: Option<String>,
}

/// Who is logged in, and the token writes must echo in `X-CSRF-Token`.
#[derive(Serialize)]
pub struct SessionInfo {
    name: String,
    role: Role,
    csrf: Option<String>,
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

async fn check_credentials(state: &AppState, req: LoginRequest) -> ApiResult<(String, Role)> {
    let refused = || ApiError::unauthorized("wrong name or password");
    if let Some(token) = req.token {
        return if constant_time_eq(token.trim().as_bytes(), state.admin_token.as_bytes()) {
            Ok(("admin".into(), Role::Admin))
        } else {
            Err(refused())
        };
    }
    let (Some(name), Some(password)) = (req.username, req.password) else {
        return Err(ApiError::bad_request("send username and password, or token"));
    };
    let stored = db::accounts::credentials(state.db.pool(), &name).await?;
    let (role, hash) = stored.map_or((None, None), |(r, h)| (Some(r), Some(h)));
    if !passwords::verify(password, hash).await? {
        return Err(refused());
    }
    let role = role.as_deref().and_then(Role::parse).ok_or_else(refused)?;
    Ok((name, role))
}

/// `POST /console/api/login`.
pub async fn login(
    State(state): State<Arc<AppState>>,
    PeerAddr(source): PeerAddr,
    JsonBody(req): JsonBody<LoginRequest>,
) -> ApiResult<Response> {
    if let Err(wait) = state.logins.take(&source.ip().to_string(), 1) {
        return Err(ApiError::too_many("too many login attempts from this address; retry later", wait));
    }
    let (name, role) = match check_credentials(&state, req).await {
        Ok(who) => who,
        Err(e) => {
            tracing::warn!(source = %source.ip(), "console login refused");
            return Err(e);
        }
    };
    let (token, csrf) = (random_token(), random_token());
    let expires_ms = ringfence_proto::now_ms() + SESSION_TTL.as_millis() as i64;
    let session =
        SessionRow { account: name.clone(), role: role.as_str().into(), csrf: csrf.clone(), expires_ms };
    let mut tx = state.db.begin().await?;
    db::accounts::insert_session(&mut tx, &token_hash(&token), &session).await?;
    let details = json!({"account": name, "role": role.as_str(), "source": source.ip().to_string()});
    db::audit::append(&mut tx, &format!("console:{name}"), "console.login", details).await?;
    tx.commit().await.map_err(db::DbError::from)?;
    let cookie = format!(
        "{SESSION_COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={}",
        SESSION_TTL.as_secs()
    );
    let body = SessionInfo { name, role, csrf: Some(csrf) };
    Ok(([(SET_COOKIE, cookie)], Json(body)).into_response())
}

/// `GET /console/api/session`.
pub async fn current(Reader(p): Reader) -> Json<SessionInfo> {
    Json(SessionInfo { name: p.name, role: p.role, csrf: p.csrf })
}

/// `POST /console/api/logout`: ends the session, clears the cookie.
pub async fn logout(State(state): State<Arc<AppState>>, Writer(p): Writer) -> ApiResult<Response> {
    end_session(&state, &p).await?;
    let cookie = format!("{SESSION_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0");
    Ok(([(SET_COOKIE, cookie)], Json(json!({"ok": true}))).into_response())
}

async fn end_session(state: &AppState, p: &Principal) -> ApiResult<()> {
    let Some(hash) = &p.session_hash else { return Ok(()) };
    let mut tx = state.db.begin().await?;
    db::accounts::remove_session(&mut tx, hash).await?;
    db::audit::append(&mut tx, &p.actor(), "console.logout", json!({"account": p.name})).await?;
    tx.commit().await.map_err(db::DbError::from)?;
    Ok(())
}
