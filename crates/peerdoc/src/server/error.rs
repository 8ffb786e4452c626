//! [`ApiError`]: the one error shape of the API, and extractors whose rejections use it.

use axum::Json;
use axum::extract::rejection::{BytesRejection, JsonRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use peerdoc_node::{DocumentId, NodeError};
use serde::de::DeserializeOwned;

/// An error answer: `{"code": "...", "message": "..."}` with an HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The stable, machine-readable code (`docs/api.md`).
    pub code: &'static str,
    /// What happened, for a human.
    pub message: String,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub(crate) fn bad_json(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_json", message)
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub(crate) fn bad_path(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_path", message)
    }

    pub(crate) fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            message,
        )
    }

    pub(crate) fn too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            "request body is over the limit (api.max_body_bytes)",
        )
    }

    /// The code a bare status maps to (for responses axum produced itself).
    pub(crate) fn from_status(status: StatusCode, message: impl Into<String>) -> Self {
        let code = match status {
            StatusCode::BAD_REQUEST => "bad_request",
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::GONE => "deleted",
            StatusCode::PAYLOAD_TOO_LARGE => "too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::UNPROCESSABLE_ENTITY => "invalid_change",
            StatusCode::SERVICE_UNAVAILABLE => "busy",
            _ if status.is_client_error() => "bad_request",
            _ => "internal",
        };
        Self::new(status, code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = crate::api::ErrorBody {
            code: self.code.to_owned(),
            message: self.message,
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<NodeError> for ApiError {
    fn from(error: NodeError) -> Self {
        let message = error.to_string();
        let (status, code) = match &error {
            NodeError::DocumentNotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            NodeError::DocumentDeleted(_) => (StatusCode::GONE, "deleted"),
            NodeError::InvalidChange(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_change"),
            NodeError::UnknownHeads(_) => (StatusCode::NOT_FOUND, "unknown_heads"),
            NodeError::InvalidDocument(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_document"),
            NodeError::Busy(_) => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            NodeError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            NodeError::Storage(_) => (StatusCode::INTERNAL_SERVER_ERROR, "storage"),
            NodeError::StorageFull(_) => (StatusCode::INSUFFICIENT_STORAGE, "storage_full"),
            _ => {
                tracing::error!(%error, "internal error answering a request");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        };
        Self::new(status, code, message)
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => {
                Self::unsupported_media_type("expected Content-Type: application/json")
            }
            JsonRejection::JsonDataError(e) => Self::bad_json(e.body_text()),
            JsonRejection::JsonSyntaxError(e) => Self::bad_json(e.body_text()),
            JsonRejection::BytesRejection(e) => from_bytes_rejection(e),
            other => Self::from_status(other.status(), other.body_text()),
        }
    }
}

fn from_bytes_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large()
    } else {
        ApiError::bad_request(rejection.body_text())
    }
}

/// `axum::Json` whose rejections are [`ApiError`]s.
#[derive(Debug)]
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        // Through `Value` first: serde would also accept a struct written as an array.
        let Json(value) = Json::<serde_json::Value>::from_request(req, state).await?;
        if !value.is_object() {
            return Err(ApiError::bad_json("the body must be a JSON object"));
        }
        serde_json::from_value(value)
            .map(Self)
            .map_err(|e| ApiError::bad_json(format!("unexpected body shape: {e}")))
    }
}

/// A request body of raw bytes that must be `application/octet-stream`.
#[derive(Debug)]
pub(crate) struct OctetStream(pub(crate) axum::body::Bytes);

impl<S: Send + Sync> FromRequest<S> for OctetStream {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let content_type = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let essence = content_type.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("application/octet-stream") {
            return Err(ApiError::unsupported_media_type(
                "expected Content-Type: application/octet-stream",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(from_bytes_rejection)?;
        Ok(Self(bytes))
    }
}

/// The query string as decoded `(key, value)` pairs, in order; keys may repeat.
#[derive(Debug, Default)]
pub(crate) struct QueryPairs(pub(crate) Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let Some(query) = parts.uri.query() else {
            return Ok(Self::default());
        };
        let mut pairs = Vec::new();
        for part in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = part.split_once('=').unwrap_or((part, ""));
            let decode = |s: &str| {
                percent_decode(s).ok_or_else(|| {
                    ApiError::bad_request(format!("query parameter {part:?} is not valid"))
                })
            };
            pairs.push((decode(key)?, decode(value)?));
        }
        Ok(Self(pairs))
    }
}

impl QueryPairs {
    /// The last value of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`.
    pub(crate) fn all(&self, key: &str) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `key` as a boolean (`true`/`false`/`1`/`0`), `default` when absent.
    pub(crate) fn flag(&self, key: &str, default: bool) -> Result<bool, ApiError> {
        match self.get(key) {
            None => Ok(default),
            Some("true" | "1" | "") => Ok(true),
            Some("false" | "0") => Ok(false),
            Some(other) => Err(ApiError::bad_request(format!(
                "?{key}= must be true or false, not {other:?}"
            ))),
        }
    }

    /// Rejects parameters this endpoint does not know.
    pub(crate) fn only(&self, known: &[&str]) -> Result<(), ApiError> {
        match self.0.iter().find(|(k, _)| !known.contains(&k.as_str())) {
            Some((key, _)) => Err(ApiError::bad_request(format!(
                "unknown query parameter {key:?}"
            ))),
            None => Ok(()),
        }
    }
}

/// Decodes `%XX` escapes and `+` (as a space); `None` for a bad escape or non-UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Parses a document id (bare or an `automerge:` URL) from the route.
pub(crate) fn parse_doc_id(text: &str) -> Result<DocumentId, ApiError> {
    DocumentId::parse(text).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_document_id",
            format!("{text:?} is not a document id: {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(
            percent_decode("automerge%3Aabc+d").as_deref(),
            Some("automerge:abc d")
        );
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
    }
}
