//! Who is using the console: an operator account's session (cookie `__Host-rf_session`, its
//! CSRF token echoed in `X-CSRF-Token` on every write) or the admin bearer credential (the
//! CLI; no cookie, so no CSRF). Roles: viewer reads; operator also applies and rolls back
//! policies and acknowledges alerts; admin also manages accounts.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::request::Parts;
use sha2::{Digest, Sha256};

use crate::api::auth::constant_time_eq;
use crate::api::error::{ApiError, ApiResult};
use crate::api::state::AppState;
use crate::db;

/// The session cookie (`__Host-`: Secure, Path=/, no Domain, enforced by browsers).
pub const SESSION_COOKIE: &str = "__Host-rf_session";
/// The header a write carries the session's CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// A console role, weakest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads every page.
    Viewer,
    /// Also applies and rolls back policies, acknowledges alerts.
    Operator,
    /// Also manages accounts.
    Admin,
}

impl Role {
    /// Its stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// From its stored name.
    pub fn parse(text: &str) -> Option<Role> {
        [Role::Viewer, Role::Operator, Role::Admin].into_iter().find(|r| r.as_str() == text)
    }
}

/// An authenticated console user.
#[derive(Clone, Debug)]
pub struct Principal {
    /// Account name (`admin` for the admin credential).
    pub name: String,
    /// Role.
    pub role: Role,
    /// The session's CSRF token (`None` for the bearer credential).
    pub csrf: Option<String>,
    /// The session token's hash (`None` for the bearer credential).
    pub session_hash: Option<String>,
}

impl Principal {
    /// The principal if its role is at least `min`, else 403.
    pub fn require(&self, min: Role) -> ApiResult<&Principal> {
        if self.role >= min {
            Ok(self)
        } else {
            Err(ApiError::forbidden(format!(
                "account {} is a {}: this needs the {} role",
                self.name,
                self.role.as_str(),
                min.as_str()
            )))
        }
    }

    /// The audit log's actor for this user.
    pub fn actor(&self) -> String {
        format!("console:{}", self.name)
    }
}

/// Any authenticated user (reads).
pub struct Reader(pub Principal);

/// An authenticated user whose request is not cross-site: a session write must echo its CSRF
/// token (the cookie is also `SameSite=Strict`).
pub struct Writer(pub Principal);

/// SHA-256 (hex) of a session token: only hashes are stored.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The session cookie's value, if sent.
pub fn session_cookie(parts: &Parts) -> Option<String> {
    parts.headers.get_all(COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(
        |c| c.trim().strip_prefix(SESSION_COOKIE).and_then(|rest| rest.strip_prefix('=')).map(str::to_owned),
    )
}

async fn authenticate(parts: &Parts, state: &AppState) -> ApiResult<Principal> {
    if let Some(header) = parts.headers.get(AUTHORIZATION) {
        let token = header.to_str().ok().and_then(|h| h.strip_prefix("Bearer ")).unwrap_or("");
        if constant_time_eq(token.trim().as_bytes(), state.admin_token.as_bytes()) {
            return Ok(Principal { name: "admin".into(), role: Role::Admin, csrf: None, session_hash: None });
        }
        return Err(ApiError::unauthorized("wrong admin credential"));
    }
    let Some(token) = session_cookie(parts) else {
        return Err(ApiError::unauthorized("not logged in: POST /console/api/login first"));
    };
    let hash = token_hash(&token);
    let session = db::accounts::session(state.db.pool(), &hash)
        .await?
        .ok_or_else(|| ApiError::unauthorized("session expired or ended: log in again"))?;
    let role = Role::parse(&session.role)
        .ok_or_else(|| ApiError::forbidden(format!("stored role {:?} is unknown", session.role)))?;
    Ok(Principal { name: session.account, role, csrf: Some(session.csrf), session_hash: Some(hash) })
}

impl FromRequestParts<Arc<AppState>> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, ApiError> {
        Ok(Reader(authenticate(parts, state).await?))
    }
}

impl FromRequestParts<Arc<AppState>> for Writer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let principal = authenticate(parts, state).await?;
        if let Some(expected) = &principal.csrf {
            let sent = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
            if !constant_time_eq(sent.as_bytes(), expected.as_bytes()) {
                return Err(ApiError::forbidden(format!(
                    "missing or wrong {CSRF_HEADER} header (the token is in GET /console/api/session)"
                )));
            }
        }
        Ok(Writer(principal))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_order_and_round_trip() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        for r in [Role::Viewer, Role::Operator, Role::Admin] {
            assert_eq!(Role::parse(r.as_str()), Some(r));
        }
        assert_eq!(Role::parse("root"), None);
        let p = Principal { name: "v".into(), role: Role::Viewer, csrf: None, session_hash: None };
        assert!(p.require(Role::Viewer).is_ok());
        assert_eq!(p.require(Role::Operator).unwrap_err().status, axum::http::StatusCode::FORBIDDEN);
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let req = axum::http::Request::builder()
            .header(COOKIE, "a=1; __Host-rf_session=abc; b=2")
            .body(())
            .unwrap();
        let (parts, _) = req.into_parts();
        assert_eq!(session_cookie(&parts).as_deref(), Some("abc"));
    }
}
