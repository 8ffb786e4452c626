//! Browser sign-in for the dashboard: one-time login links and session cookies.
//!
//! `peerdoc open` (holding the API token) asks `POST /v1/session/link` for a link
//! `http://<api>/login?code=<one-time code>`, valid for [`LOGIN_CODE_TTL`] and once. The
//! browser that opens it gets a session cookie (`HttpOnly`, `SameSite=Strict`, random
//! 256 bits) and is redirected to `/`, so neither the token nor the code stays in the
//! page or its URL. Sessions live in memory: a restart signs every browser out (run
//! `peerdoc open` again). At most [`MAX_SESSIONS`]; the least recently used goes first.
//!
//! A request authenticated by its cookie that changes something (any method but GET and
//! HEAD) must come from the dashboard's own origin (`Origin` equal to the API's URL):
//! with `SameSite=Strict` another site's page cannot send the cookie at all, and this is
//! the second lock. The API sends no CORS headers, so another origin cannot read either.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::error::QueryPairs;
use super::{ApiError, AppState};
use crate::api::SessionLink;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use rand::TryRngCore as _;

/// The session cookie's name.
pub(crate) const COOKIE: &str = "peerdoc_session";
/// How long a login link works.
pub(crate) const LOGIN_CODE_TTL: Duration = Duration::from_secs(120);
/// A session unused this long ends.
pub(crate) const SESSION_IDLE: Duration = Duration::from_secs(24 * 3600);
/// Most sessions kept (browsers signed in at once).
pub(crate) const MAX_SESSIONS: usize = 64;
/// Most login links waiting to be opened.
const MAX_LOGIN_CODES: usize = 16;

/// Login codes and sessions, in memory.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    codes: Mutex<HashMap<String, Instant>>,
    /// Session id → last use.
    sessions: Mutex<HashMap<String, Instant>>,
}

fn random_hex() -> Option<String> {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.try_fill_bytes(&mut bytes).ok()?;
    Some(hex::encode(bytes))
}

impl Sessions {
    /// A new one-time login code.
    fn new_code(&self, now: Instant) -> Option<String> {
        let code = random_hex()?;
        let mut codes = self.codes.lock().unwrap_or_else(|p| p.into_inner());
        insert_bounded(
            &mut codes,
            code.clone(),
            now,
            LOGIN_CODE_TTL,
            MAX_LOGIN_CODES,
        );
        Some(code)
    }

    /// Spends `code`; a new session id when it was valid.
    fn redeem(&self, code: &str, now: Instant) -> Option<String> {
        let issued = self
            .codes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(code)?;
        if now.duration_since(issued) >= LOGIN_CODE_TTL {
            return None;
        }
        let session = random_hex()?;
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        insert_bounded(
            &mut sessions,
            session.clone(),
            now,
            SESSION_IDLE,
            MAX_SESSIONS,
        );
        Some(session)
    }

    /// Whether `id` is a live session (and marks it used).
    pub(crate) fn check(&self, id: &str, now: Instant) -> bool {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        match sessions.get_mut(id) {
            Some(used) if now.duration_since(*used) < SESSION_IDLE => {
                *used = now;
                true
            }
            Some(_) => {
                sessions.remove(id);
                false
            }
            None => false,
        }
    }

    fn end(&self, id: &str) {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

/// Inserts `key` (at `now`) after dropping the entries older than `ttl` and, while the
/// map is full (`max`), the oldest.
fn insert_bounded(
    map: &mut HashMap<String, Instant>,
    key: String,
    now: Instant,
    ttl: Duration,
    max: usize,
) {
    map.retain(|_, at| now.duration_since(*at) < ttl);
    while map.len() >= max {
        let Some(oldest) = map.iter().min_by_key(|(_, t)| **t).map(|(k, _)| k.clone()) else {
            break;
        };
        map.remove(&oldest);
    }
    map.insert(key, now);
}

/// The session id in a request's `Cookie` header, if any.
pub(crate) fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
}

/// Whether a request's `Origin` is the daemon's own (the origin of `api_url`).
pub(crate) fn same_origin(headers: &HeaderMap, api_url: &str) -> bool {
    headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|origin| origin.trim_end_matches('/') == api_url.trim_end_matches('/'))
}

/// A one-time link that signs a browser in to the dashboard
///
/// The link (2 minutes, single use) opens `/login?code=…`, which sets the session cookie
/// (`peerdoc_session`, `HttpOnly`, `SameSite=Strict`) and redirects to the dashboard at
/// `/`. Bearer token only: a session cannot mint links (`403 cross_origin` for a
/// cookie-authenticated write from another origin).
#[utoipa::path(
    post,
    path = "/v1/session/link",
    operation_id = "dashboardLink",
    tag = "meta",
    responses(
        (status = 200, description = "The link", body = SessionLink),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, response = super::openapi::Forbidden),
        (status = 503, response = super::openapi::Unavailable),
    )
)]
pub(super) async fn link(State(state): State<AppState>) -> Result<Json<SessionLink>, ApiError> {
    let code = state.sessions.new_code(Instant::now()).ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "no OS randomness",
        )
    })?;
    let url = format!("{}/login?code={code}", state.config.api_url);
    Ok(Json(SessionLink {
        url,
        expires_in_secs: LOGIN_CODE_TTL.as_secs(),
    }))
}

/// `GET /login?code=…`: spends the code, sets the session cookie, redirects to `/`.
pub(super) async fn login(State(state): State<AppState>, query: QueryPairs) -> Response {
    let code = query.get("code").unwrap_or_default();
    match state.sessions.redeem(code, Instant::now()) {
        Some(session) => {
            let cookie = format!("{COOKIE}={session}; HttpOnly; SameSite=Strict; Path=/");
            let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            response
        }
        None => sign_in_page(
            StatusCode::UNAUTHORIZED,
            "This sign-in link has expired or was used already.",
        ),
    }
}

/// `POST /logout`: ends this browser's session.
pub(super) async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(id) = cookie(&headers) {
        state.sessions.end(id);
    }
    let clear = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, "/")]).into_response();
    if let Ok(value) = HeaderValue::from_str(&clear) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// The page a browser without a session sees: what to do, in words.
pub(crate) fn sign_in_page(status: StatusCode, why: &str) -> Response {
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>peerdoc: sign in</title><link rel=\"stylesheet\" href=\"/dashboard/app.css\"></head>\
         <body><main class=\"signin\"><h1>peerdoc</h1><p id=\"why\">{why}</p>\
         <p>To open the dashboard, run <code>peerdoc open</code> on this device: it opens \
         this page signed in.</p></main></body></html>"
    );
    (status, Html(page)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_works_once_and_not_after_it_expires() {
        let sessions = Sessions::default();
        let t0 = Instant::now();
        let code = sessions.new_code(t0).unwrap();
        let session = sessions.redeem(&code, t0).expect("valid once");
        assert!(sessions.check(&session, t0));
        assert!(sessions.redeem(&code, t0).is_none(), "used twice");
        let late = sessions.new_code(t0).unwrap();
        assert!(sessions.redeem(&late, t0 + LOGIN_CODE_TTL).is_none());
        assert!(!sessions.check("not-a-session", t0));
        // Idle too long: gone.
        assert!(!sessions.check(&session, t0 + SESSION_IDLE + Duration::from_secs(1)));
    }

    #[test]
    fn sessions_are_bounded_oldest_first() {
        let sessions = Sessions::default();
        let t0 = Instant::now();
        let first = {
            let code = sessions.new_code(t0).unwrap();
            sessions.redeem(&code, t0).unwrap()
        };
        for i in 1..=MAX_SESSIONS as u64 {
            let at = t0 + Duration::from_secs(i);
            let code = sessions.new_code(at).unwrap();
            sessions.redeem(&code, at).unwrap();
        }
        assert!(!sessions.check(&first, t0 + Duration::from_secs(100)));
    }

    #[test]
    fn the_cookie_and_origin_are_read_exactly() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; peerdoc_session=abc ; b=2"),
        );
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:7420"),
        );
        assert_eq!(cookie(&headers), Some("abc"));
        assert!(same_origin(&headers, "http://127.0.0.1:7420"));
        assert!(!same_origin(&headers, "http://127.0.0.1:7421"));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://evil.example"),
        );
        assert!(!same_origin(&headers, "http://127.0.0.1:7420"));
    }
}
