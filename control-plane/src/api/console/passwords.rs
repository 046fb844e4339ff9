//! Password hashing (Argon2id, a random salt per password, PHC strings) off the async threads.

use argon2::password_hash::{rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;

use crate::api::error::{ApiError, ApiResult};

/// The shortest password an account may have.
pub const MIN_PASSWORD: usize = 12;

/// A hash of a password nobody has, verified when the account does not exist so that a login
/// takes as long either way.
const DECOY: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$cmluZ2ZlbmNlLWRlY295$5Hk0tMrwFNyVL3/QkgmPJRuTmOdW6VbKPOnqE9ZLXTc";

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, format!("password hashing: {e}"))
}

/// The PHC string of `password`.
pub async fn hash(password: String) -> ApiResult<String> {
    if password.chars().count() < MIN_PASSWORD {
        return Err(ApiError::bad_request(format!("password: at least {MIN_PASSWORD} characters")));
    }
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default().hash_password(password.as_bytes(), &salt).map(|h| h.to_string()).map_err(internal)
    })
    .await
    .map_err(internal)?
}

/// Whether `password` matches `stored` (`None`: no such account; the decoy is checked).
pub async fn verify(password: String, stored: Option<String>) -> ApiResult<bool> {
    let exists = stored.is_some();
    let stored = stored.unwrap_or_else(|| DECOY.to_owned());
    tokio::task::spawn_blocking(move || {
        let parsed = PasswordHash::new(&stored).map_err(internal)?;
        Ok(Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok() && exists)
    })
    .await
    .map_err(internal)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verify_and_short_passwords_are_refused() {
        let h = hash("correct horse battery".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("correct horse battery".into(), Some(h.clone())).await.unwrap());
        assert!(!verify("wrong horse battery".into(), Some(h)).await.unwrap());
        assert!(!verify("anything at all".into(), None).await.unwrap());
        assert!(hash("short".into()).await.is_err());
    }
}
