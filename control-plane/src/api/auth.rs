//! Who is calling: agents by their client certificate (verified by rustls against the CA during
//! the handshake, read into a request extension by the connection handler), operators by the
//! admin bearer credential. Also [`JsonBody`], a JSON extractor whose rejections are JSON errors.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::state::AppState;
use crate::db::{self, NodeRow};
use crate::pki::PeerCert;
use std::sync::Arc;

/// The verified client certificate of the connection, if the client presented one.
#[derive(Clone, Debug, Default)]
pub struct PeerIdentity(pub Option<PeerCert>);

/// The address the connection comes from (set by the connection handler).
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub std::net::SocketAddr);

impl<S: Send + Sync> FromRequestParts<S> for PeerAddr {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts.extensions.get::<PeerAddr>().copied().ok_or_else(|| {
            ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, "connection address unknown")
        })
    }
}

/// An operator request with the admin credential.
pub struct Admin;

/// An agent request from an enrolled, unrevoked node.
pub struct Node(pub NodeRow);

/// Whether `a == b`, in time that depends only on the lengths.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl FromRequestParts<Arc<AppState>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let header = parts.headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
        let Some(token) = header.strip_prefix("Bearer ") else {
            return Err(ApiError::unauthorized(
                "admin credential required: send `Authorization: Bearer <token>` (the token is in admin.token in the control plane's state directory)",
            ));
        };
        if constant_time_eq(token.trim().as_bytes(), state.admin_token.as_bytes()) {
            Ok(Admin)
        } else {
            Err(ApiError::unauthorized("wrong admin credential (use the token in admin.token in the control plane's state directory)"))
        }
    }
}

impl FromRequestParts<Arc<AppState>> for Node {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let Some(PeerIdentity(Some(peer))) = parts.extensions.get::<PeerIdentity>().cloned() else {
            return Err(ApiError::unauthorized(
                "client certificate required: this endpoint is for enrolled agents (enroll with a join token first)",
            ));
        };
        let node = db::nodes::get(state.db.pool(), &peer.node_id)
            .await?
            .ok_or_else(|| ApiError::forbidden(format!("node {} is not enrolled here", peer.node_id)))?;
        if node.info.revoked_ms.is_some() {
            return Err(ApiError::forbidden(format!(
                "node {} is revoked; enroll it again with a new join token",
                peer.node_id
            )));
        }
        if peer.not_after_ms <= ringfence_proto::now_ms() {
            return Err(ApiError::forbidden("client certificate expired; enroll again"));
        }
        // Last seen with a minute's resolution: one write per node and minute, not per request.
        let now = ringfence_proto::now_ms();
        if node.info.last_seen_ms.is_none_or(|seen| now - seen >= 60_000) {
            db::nodes::touch(state.db.pool(), &peer.node_id).await?;
            let last = node.info.last_seen_ms.unwrap_or(node.info.enrolled_ms);
            db::history::heard_from(state.db.pool(), &peer.node_id, last, now).await?;
        }
        Ok(Node(node))
    }
}

/// A JSON request body (unknown fields are refused by the types); errors are JSON: 415 without
/// `Content-Type: application/json`, 400 for a body that is not JSON or not the documented
/// shape (axum's 422 for the latter would be mistaken for 422 "invalid policy"). The body must
/// be a JSON object: serde would otherwise fill a struct from an array, field by field in order.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        use axum::body::{Body, Bytes};
        use axum::extract::rejection::JsonRejection;
        use axum::http::header::CONTENT_TYPE;
        // Read the body (within the body limit) to look at it, then let axum check the content
        // type and deserialize, with its error messages (field paths, line and column).
        let content_type = req.headers().get(CONTENT_TYPE).cloned();
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|rejection| ApiError::new(rejection.status(), rejection.body_text()))?;
        let is_object = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
        let mut again = Request::new(Body::from(bytes));
        if let Some(ct) = content_type {
            again.headers_mut().insert(CONTENT_TYPE, ct);
        }
        match axum::Json::<T>::from_request(again, state).await {
            Ok(_) if !is_object => Err(ApiError::bad_request("expected a JSON object as the request body")),
            Ok(axum::Json(value)) => Ok(JsonBody(value)),
            Err(rejection @ JsonRejection::JsonDataError(_)) => {
                Err(ApiError::bad_request(rejection.body_text()))
            }
            Err(rejection) => Err(ApiError::new(rejection.status(), rejection.body_text())),
        }
    }
}

/// Query parameters; errors are JSON.
pub struct QueryArgs<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryArgs<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(QueryArgs(value)),
            Err(rejection) => Err(ApiError::new(rejection.status(), rejection.body_text())),
        }
    }
}

/// A path parameter; errors are JSON.
pub struct PathArg<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for PathArg<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(PathArg(value)),
            Err(rejection) => Err(ApiError::new(rejection.status(), rejection.body_text())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::StatusCode;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Shape {
        n: u64,
    }

    async fn refusal(content_type: Option<&str>, body: &str) -> ApiError {
        let mut req = Request::builder().method("POST").uri("/x");
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let req = req.body(Body::from(body.to_owned())).unwrap();
        match JsonBody::<Shape>::from_request(req, &()).await {
            Ok(JsonBody(v)) => panic!("accepted {v:?}"),
            Err(e) => e,
        }
    }

    // Found by schemathesis: wrong field types and unknown fields answered 422, which the API
    // documents only for invalid policies.
    #[tokio::test]
    async fn body_refusals_are_400_or_415() {
        let json = Some("application/json");
        // An array would fill the struct positionally (serde): refused too (found by
        // schemathesis: POST /v1/report accepted `[null, null]`).
        for body in ["{\"n\": \"x\"}", "{\"n\": 1, \"m\": 2}", "{}", "false", "\u{0}", "{", "[1]", " [1] "] {
            let e = refusal(json, body).await;
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{body:?}: {e:?}");
            assert!(!e.body.error.is_empty());
        }
        assert_eq!(refusal(None, "{\"n\": 1}").await.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(refusal(None, "[1]").await.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(refusal(json, "[1]").await.body.error.contains("JSON object"));
        // What is accepted still is.
        let req = Request::builder()
            .method("POST")
            .header("content-type", "application/json; charset=utf-8")
            .body(Body::from(" \n{\"n\": 7}"))
            .unwrap();
        assert_eq!(JsonBody::<Shape>::from_request(req, &()).await.unwrap().0.n, 7);
    }
}
