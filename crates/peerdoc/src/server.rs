//! The local HTTP API (`docs/api.md`).
//!
//! [`router`] builds the axum router over an [`AppState`]; [`serve`] runs it on a bound
//! listener until a shutdown future resolves, so tests bind `127.0.0.1:0` in-process:
//!
//! ```no_run
//! # async fn demo(node: peerdoc_node::NodeHandle) -> std::io::Result<()> {
//! use peerdoc::server::{AppState, ServerConfig, serve};
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let config = ServerConfig::new("secret-token".to_owned(), "http://127.0.0.1:0".into());
//! serve(listener, AppState::new(node, config), std::future::pending()).await
//! # }
//! ```
//!
//! Every error, axum's own rejections included, is `{"code", "message"}` JSON
//! ([`ApiError`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use peerdoc_node::NodeHandle;
use tokio::net::TcpListener;
use tokio::sync::watch;

mod auth;
mod dashboard;
mod diagnose;
mod docs;
mod error;
mod events;
mod listen;
mod metrics;
mod openapi;
mod receipts;
mod resolve;
mod session;
mod status;
mod sync_ws;
mod team;

pub use error::ApiError;
pub use listen::Limits;
pub use openapi::openapi_json;
pub(crate) use status::epoch_ms;

use metrics::HttpMetrics;

/// Longest error body from axum that is copied into an [`ApiError`] message.
const MAX_REWRITTEN_BODY: usize = 4096;

/// Settings of the HTTP layer.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The bearer token every request but `/health` must carry.
    pub token: String,
    /// The URL the API is served on (reported by `/v1/status`).
    pub api_url: String,
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Where the store lives, for `peerdoc_store_bytes` and `store_bytes` (none: 0).
    pub store_dir: Option<std::path::PathBuf>,
    /// Web origins (`Origin` header values, e.g. `http://localhost:5173`) allowed to
    /// open `/v1/sync`; a request without `Origin` (not from a browser) is always let
    /// through to the token check.
    pub allowed_origins: Vec<String>,
    /// Largest WebSocket message on `/v1/sync`, in bytes.
    pub max_sync_message_bytes: usize,
    /// Cloud endpoints' state, for `/v1/status` and `/metrics` (none: not shown).
    pub cloud: Option<crate::cloud::CloudStatus>,
    /// Connection cap and timeouts of the HTTP server.
    pub limits: Limits,
}

impl ServerConfig {
    /// Defaults (64 MiB body limit, no store size) with this token and URL.
    pub fn new(token: String, api_url: String) -> Self {
        Self {
            token,
            api_url,
            max_body_bytes: crate::config::DEFAULT_MAX_BODY_BYTES,
            store_dir: None,
            allowed_origins: Vec::new(),
            max_sync_message_bytes: peerdoc_core::wire::DEFAULT_MAX_MESSAGE_SIZE,
            cloud: None,
            limits: Limits::default(),
        }
    }
}

/// What every handler shares. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    pub(crate) node: NodeHandle,
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) http: Arc<HttpMetrics>,
    pub(crate) sync_sockets: Arc<sync_ws::SyncSocketMetrics>,
    /// Turns true when the server starts shutting down: `/health` says so and event
    /// streams end (so that graceful shutdown does not wait on them).
    pub(crate) stopping: watch::Receiver<bool>,
    stop: Arc<watch::Sender<bool>>,
    /// The team side (none: an embedder serving a node without teams).
    pub(crate) team: Option<Arc<crate::team::TeamService>>,
    /// Shares titles and priorities with every device (none: an embedder's node keeps
    /// them local).
    pub(crate) shared_meta: Option<crate::shared_meta::SharedMeta>,
    /// Dashboard sign-in links and browser sessions.
    pub(crate) sessions: Arc<session::Sessions>,
}

impl AppState {
    /// State for serving `node`.
    pub fn new(node: NodeHandle, config: ServerConfig) -> Self {
        let (stop, stopping) = watch::channel(false);
        Self {
            node,
            config: Arc::new(config),
            http: Arc::new(HttpMetrics::new()),
            sync_sockets: Arc::default(),
            stopping,
            stop: Arc::new(stop),
            team: None,
            shared_meta: None,
            sessions: Arc::default(),
        }
    }

    /// Serves the team routes (`/v1/team…`) from `team`, labels peers and history with
    /// device names, and refuses writes on a viewer device.
    pub fn with_team(mut self, team: Arc<crate::team::TeamService>) -> Self {
        self.team = Some(team);
        self
    }

    /// Shares titles and priorities set through this API with every device.
    pub fn with_shared_meta(mut self, shared: crate::shared_meta::SharedMeta) -> Self {
        self.shared_meta = Some(shared);
        self
    }

    /// The daemon's own documents (the team's membership, the shared titles), which
    /// `GET /v1/docs` leaves out unless asked (`?system=true`).
    pub(crate) fn system_docs(&self) -> Vec<peerdoc_node::DocumentId> {
        let mut docs = Vec::new();
        if self.shared_meta.is_some() {
            docs.push(crate::shared_meta::doc_id());
        }
        if let Some(team) = self.team.as_ref().and_then(|t| t.team_doc()) {
            docs.push(team);
        }
        docs
    }

    /// Records a title and/or priority set here for every device (when shared).
    pub(crate) async fn share_meta(
        &self,
        doc: peerdoc_node::DocumentId,
        title: Option<Option<&str>>,
        priority: Option<i32>,
    ) {
        if let Some(shared) = &self.shared_meta {
            shared.publish(doc, title, priority).await;
        }
    }

    /// Marks the server as stopping (health turns 503, event streams end).
    pub fn begin_shutdown(&self) {
        self.stop.send_replace(true);
    }

    pub(crate) fn is_stopping(&self) -> bool {
        *self.stopping.borrow()
    }
}

/// The API's router. Every route of `docs/api.md`, behind the token check (except
/// `/health`), with the body limit and JSON errors everywhere.
pub fn router(state: AppState) -> Router {
    let authed = Router::new()
        .route("/v1/status", get(status::status))
        .route(
            "/v1/peers",
            get(status::peers)
                .post(status::add_peer)
                .delete(status::remove_peer),
        )
        .route("/v1/docs", get(docs::list).post(docs::create))
        .route("/v1/docs/import", axum::routing::post(docs::import))
        .route(
            "/v1/docs/{id}",
            get(docs::read).patch(docs::edit).delete(docs::delete),
        )
        .route("/v1/docs/{id}/export", get(docs::export))
        .route("/v1/docs/{id}/fetch", axum::routing::post(docs::fetch))
        .route("/v1/docs/{id}/meta", axum::routing::patch(docs::set_meta))
        .route("/v1/docs/{id}/conflicts", get(docs::conflicts))
        .route(
            "/v1/docs/{id}/conflicts/resolve",
            axum::routing::post(resolve::resolve),
        )
        .route("/v1/docs/{id}/history", get(docs::history))
        .route("/v1/events", get(events::events))
        .route("/v1/session/link", axum::routing::post(session::link))
        .route("/v1/openapi.json", get(openapi::openapi))
        .route("/metrics", get(metrics::metrics))
        .route("/v1/team", get(team::status).post(team::create))
        .route("/v1/team/join", axum::routing::post(team::join))
        .route(
            "/v1/team/invites",
            get(team::invites).post(team::create_invite),
        )
        .route(
            "/v1/team/invites/{id}",
            axum::routing::delete(team::revoke_invite),
        )
        .route("/v1/team/invites/{id}/qr.svg", get(team::invite_qr))
        .route(
            "/v1/team/members/{device}",
            axum::routing::patch(team::update_member).delete(team::revoke_member),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            team::refuse_writes_when_read_only,
        ))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    Router::new()
        .route("/health", get(status::health))
        // The dashboard checks its own session (a page, not a JSON error, without one).
        .route("/", get(dashboard::index))
        .route("/dashboard/{asset}", get(dashboard::asset))
        .route("/login", get(session::login))
        .route("/logout", axum::routing::post(session::logout))
        // Authenticates itself: browsers cannot send the bearer header on a WebSocket.
        .route("/v1/sync", get(sync_ws::sync))
        .merge(authed)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(middleware::from_fn({
            let idle = state.config.limits.body_idle_timeout;
            move |request, next| listen::idle_body(idle, request, next)
        }))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Every route, as `(method, path)` in the router's syntax: for the OpenAPI check.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/health"),
    ("get", "/v1/status"),
    ("get", "/v1/peers"),
    ("post", "/v1/peers"),
    ("delete", "/v1/peers"),
    ("get", "/v1/docs"),
    ("post", "/v1/docs"),
    ("post", "/v1/docs/import"),
    ("get", "/v1/docs/{id}"),
    ("patch", "/v1/docs/{id}"),
    ("delete", "/v1/docs/{id}"),
    ("get", "/v1/docs/{id}/export"),
    ("post", "/v1/docs/{id}/fetch"),
    ("patch", "/v1/docs/{id}/meta"),
    ("get", "/v1/docs/{id}/conflicts"),
    ("post", "/v1/docs/{id}/conflicts/resolve"),
    ("get", "/v1/docs/{id}/history"),
    ("get", "/v1/events"),
    ("post", "/v1/session/link"),
    ("get", "/v1/openapi.json"),
    ("get", "/metrics"),
    ("get", "/v1/sync"),
    ("get", "/v1/team"),
    ("post", "/v1/team"),
    ("post", "/v1/team/join"),
    ("get", "/v1/team/invites"),
    ("post", "/v1/team/invites"),
    ("delete", "/v1/team/invites/{id}"),
    ("get", "/v1/team/invites/{id}/qr.svg"),
    ("patch", "/v1/team/members/{device}"),
    ("delete", "/v1/team/members/{device}"),
];

/// Serves the API on `listener` until `shutdown` resolves, then stops accepting,
/// ends event streams and waits for requests in flight.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state.clone());
    let limits = state.config.limits;
    let stopper = state.clone();
    listen::serve(listener, app, limits, async move {
        shutdown.await;
        stopper.begin_shutdown();
    })
    .await
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method",
    )
}

/// Counts requests by status and time, and rewrites any error response that is not JSON
/// (axum's built-in rejections) into the [`ApiError`] shape.
async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status();
    let response = if status.is_client_error() || status.is_server_error() {
        ensure_json_error(response).await
    } else {
        response
    };
    state
        .http
        .observe(response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}

async fn ensure_json_error(response: Response) -> Response {
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_REWRITTEN_BODY)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        parts
            .status
            .canonical_reason()
            .unwrap_or("error")
            .to_owned()
    } else {
        text
    };
    let mut rewritten = ApiError::from_status(parts.status, message).into_response();
    if let Some(allow) = parts.headers.get(header::ALLOW) {
        rewritten.headers_mut().insert(header::ALLOW, allow.clone());
    }
    rewritten
}

/// A header value from text we produced (always valid).
pub(crate) fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or(HeaderValue::from_static("invalid"))
}
