//! Bearer-token (or dashboard session) check for every route but `/health`.

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};

/// Lets the request through only with `Authorization: Bearer <token>`.
pub(super) async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    match presented {
        Some(token) if constant_time_eq(token.as_bytes(), state.config.token.as_bytes()) => {
            next.run(request).await
        }
        Some(_) => unauthorized("wrong token"),
        None => match super::session::cookie(request.headers()) {
            // The dashboard, signed in through `peerdoc open` (`server/session.rs`).
            Some(id) if state.sessions.check(id, std::time::Instant::now()) => {
                let reads = request.method() == Method::GET || request.method() == Method::HEAD;
                // Only the token mints sign-in links; writes only from the dashboard.
                let minting = request.uri().path() == "/v1/session/link";
                if minting
                    || (!reads
                        && !super::session::same_origin(request.headers(), &state.config.api_url))
                {
                    return ApiError::new(
                        StatusCode::FORBIDDEN,
                        "cross_origin",
                        "a signed-in browser may change things only from the dashboard's own page",
                    )
                    .into_response();
                }
                next.run(request).await
            }
            _ => unauthorized(
                "missing Authorization: Bearer <token> (see <data_dir>/api.token), or sign in \
                 with `peerdoc open`",
            ),
        },
    }
}

pub(super) fn unauthorized(message: &str) -> Response {
    let mut response =
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        axum::http::HeaderValue::from_static("Bearer"),
    );
    response
}

/// Compares without an early exit, so response time says nothing about the token.
pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
