//! `GET /v1/sync`: the automerge-repo WebSocket endpoint.
//!
//! A JS app with `@automerge/automerge-repo` and its `WebSocketClientAdapter` connects
//! here; the daemon is the server (the client sends `join`). Each binary WebSocket
//! message is one automerge-repo CBOR message, handed to the node through
//! [`NodeHandle::attach`](peerdoc_node::NodeHandle::attach).
//!
//! Browsers cannot set headers on a WebSocket, and any web page may open
//! `ws://127.0.0.1` (WebSockets are not subject to CORS). So the token comes as
//! `?token=` (or the usual bearer header), compared in constant time, and a request
//! carrying an `Origin` header is refused unless the origin is listed in
//! `[api] allowed_origins`.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::State;
use axum::extract::ws::{
    CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code,
    rejection::WebSocketUpgradeRejection,
};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use peerdoc_node::{AttachRole, NodeHandle};
use tokio::sync::watch;

use super::auth::{constant_time_eq, unauthorized};
use super::error::QueryPairs;
use super::{ApiError, AppState};

/// Longest close reason a WebSocket close frame may carry, in bytes.
const MAX_CLOSE_REASON: usize = 123;

/// WebSocket sessions of `/v1/sync`, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct SyncSocketMetrics {
    pub(crate) opened: AtomicU64,
    pub(crate) open: AtomicU64,
    pub(crate) closed_for_protocol_errors: AtomicU64,
}

/// `GET /v1/sync`.
pub(super) async fn sync(
    State(state): State<AppState>,
    query: QueryPairs,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if let Err(why) = check_token(&state, &query, &headers) {
        return unauthorized(why);
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let allowed = origin.to_str().is_ok_and(|origin| {
            state
                .config
                .allowed_origins
                .iter()
                .any(|allowed| allowed == origin)
        });
        if !allowed {
            let shown = String::from_utf8_lossy(origin.as_bytes()).into_owned();
            tracing::warn!(origin = %shown, "sync socket from a web origin refused");
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden_origin",
                format!(
                    "origin {shown:?} may not open the sync socket; list it in [api] allowed_origins"
                ),
            )
            .into_response();
        }
    }
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "not_websocket",
                format!("/v1/sync is a WebSocket endpoint: {rejection}"),
            )
            .into_response();
        }
    };
    let max = state.config.max_sync_message_bytes;
    let node = state.node.clone();
    let stopping = state.stopping.clone();
    let metrics = state.sync_sockets.clone();
    upgrade
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| async move {
            metrics.opened.fetch_add(1, Ordering::Relaxed);
            metrics.open.fetch_add(1, Ordering::Relaxed);
            if serve_socket(socket, node, stopping).await == Ending::ProtocolError {
                metrics
                    .closed_for_protocol_errors
                    .fetch_add(1, Ordering::Relaxed);
            }
            metrics.open.fetch_sub(1, Ordering::Relaxed);
        })
}

fn check_token(
    state: &AppState,
    query: &QueryPairs,
    headers: &HeaderMap,
) -> Result<(), &'static str> {
    let from_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    match query.get("token").or(from_header) {
        Some(token) if constant_time_eq(token.as_bytes(), state.config.token.as_bytes()) => Ok(()),
        Some(_) => Err("wrong token"),
        None => Err("missing ?token=<token> (see <data_dir>/api.token)"),
    }
}

/// How a session ended.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    /// The client or the node closed it, or the daemon is stopping.
    Normal,
    /// The client broke the protocol (text, oversized or undecodable frames).
    ProtocolError,
}

/// Moves frames between the socket and an attached node connection until either ends.
async fn serve_socket(
    mut socket: WebSocket,
    node: NodeHandle,
    mut stopping: watch::Receiver<bool>,
) -> Ending {
    static SESSIONS: AtomicU64 = AtomicU64::new(0);
    let label = format!("websocket #{}", SESSIONS.fetch_add(1, Ordering::Relaxed));
    let mut conn = match node.attach(AttachRole::Responder, label.clone()).await {
        Ok(conn) => conn,
        Err(error) => {
            close(&mut socket, close_code::AWAY, &error.to_string()).await;
            return Ending::Normal;
        }
    };
    loop {
        tokio::select! {
            message = socket.recv() => match message {
                None => return Ending::Normal,
                Some(Err(error)) => {
                    // Oversized frames and broken framing end up here.
                    tracing::warn!(session = %label, %error, "sync socket closed: bad frame");
                    close(&mut socket, close_code::SIZE, &format!("bad frame: {error}")).await;
                    return Ending::ProtocolError;
                }
                Some(Ok(Message::Binary(frame))) => {
                    if conn.send(frame).await.is_err() {
                        let reason = conn.close_reason().unwrap_or_else(|| "connection closed".into());
                        close(&mut socket, close_code::POLICY, &reason).await;
                        return Ending::ProtocolError;
                    }
                }
                Some(Ok(Message::Text(_))) => {
                    tracing::warn!(session = %label, "sync socket closed: text frame");
                    close(
                        &mut socket,
                        close_code::UNSUPPORTED,
                        "text frames are not automerge-repo messages; send binary CBOR",
                    )
                    .await;
                    return Ending::ProtocolError;
                }
                Some(Ok(Message::Close(_))) => return Ending::Normal,
                // Pings are answered by the WebSocket layer itself.
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            },
            frame = conn.recv() => match frame {
                Some(frame) => {
                    if socket.send(Message::Binary(frame)).await.is_err() {
                        return Ending::Normal;
                    }
                }
                None => {
                    let misbehaved = conn.closed_for_misbehaviour();
                    let (code, reason) = match conn.close_reason() {
                        None => (close_code::AWAY, "the node stopped".to_owned()),
                        Some(reason) if misbehaved => (close_code::POLICY, reason),
                        Some(reason) if reason.contains("slow consumer") => (close_code::AGAIN, reason),
                        Some(reason) => (close_code::NORMAL, reason),
                    };
                    if misbehaved {
                        tracing::warn!(session = %label, %reason, "sync socket closed: protocol violation");
                    } else {
                        tracing::info!(session = %label, %reason, "sync socket closed by the node");
                    }
                    close(&mut socket, code, &reason).await;
                    return if misbehaved { Ending::ProtocolError } else { Ending::Normal };
                }
            },
            () = stopped(&mut stopping) => {
                close(&mut socket, close_code::AWAY, "the daemon is shutting down").await;
                return Ending::Normal;
            }
        }
    }
}

/// Resolves once the server starts shutting down (or is gone).
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await.map(|_| ());
}

async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    let mut end = reason.len().min(MAX_CLOSE_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let frame = CloseFrame {
        code,
        reason: reason[..end].into(),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}
