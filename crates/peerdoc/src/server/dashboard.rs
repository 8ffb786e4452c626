//! The dashboard: one page (`crates/peerdoc/dashboard/`) served at `/`, embedded in the
//! binary, so it works with no internet. It is plain HTML, CSS and JavaScript, committed
//! as written: there is no build step, and nothing is fetched from elsewhere.
//!
//! `/` needs a session (`peerdoc open`, `server/session.rs`) or the token; without one it
//! answers a sign-in page that says what to do. The assets themselves hold no data and
//! are served to anyone.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use super::AppState;
use super::session::{cookie, sign_in_page};

const INDEX_HTML: &str = include_str!("../../dashboard/index.html");
const APP_JS: &str = include_str!("../../dashboard/app.js");
const APP_CSS: &str = include_str!("../../dashboard/app.css");

/// `GET /`.
pub(super) async fn index(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let signed_in =
        cookie(&headers).is_some_and(|id| state.sessions.check(id, std::time::Instant::now()));
    if !signed_in {
        return sign_in_page(StatusCode::UNAUTHORIZED, "This browser is not signed in.");
    }
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            // The page runs only its own script and talks only to this daemon.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                 connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        Html(INDEX_HTML),
    )
        .into_response()
}

/// `GET /dashboard/{asset}`: `app.js` and `app.css`.
pub(super) async fn asset(Path(asset): Path<String>) -> Response {
    let (content_type, body) = match asset.as_str() {
        "app.js" => ("text/javascript; charset=utf-8", APP_JS),
        "app.css" => ("text/css; charset=utf-8", APP_CSS),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}
