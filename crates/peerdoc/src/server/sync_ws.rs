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
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt as _, StreamExt as _};
use hyper_util::rt::TokioIo;
use peerdoc_node::{AttachRole, NodeHandle};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::watch;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};

use super::auth::{constant_time_eq, unauthorized};
use super::error::QueryPairs;
use super::{ApiError, AppState};
use crate::api::ErrorBody;

/// Longest close reason a WebSocket close frame may carry, in bytes.
const MAX_CLOSE_REASON: usize = 123;

/// After refusing an oversized frame, how much more of what the client is still sending
/// is read and thrown away so that it sees the close frame: closing a TCP connection
/// with unread data resets it, and a reset makes the client's kernel discard the close
/// frame (the client then reports 1006, no reason). Read into a fixed buffer, so this
/// bounds time and bandwidth, not memory.
const MAX_DRAIN_BYTES: u64 = 256 * 1024 * 1024;

/// How long that draining may take at most.
const DRAIN_GUARD: Duration = Duration::from_secs(10);

type Socket = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// WebSocket sessions of `/v1/sync`, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct SyncSocketMetrics {
    pub(crate) opened: AtomicU64,
    pub(crate) open: AtomicU64,
    /// Sessions closed because the client broke the protocol. A client that goes
    /// away without a close handshake (a closed tab, a killed process) is not one.
    pub(crate) closed_for_protocol_errors: AtomicU64,
}

/// `GET /v1/sync`.
///
/// The upgrade is done here rather than by axum's `WebSocketUpgrade`, whose socket
/// cannot be read any more once it reported an error: after an oversized frame the
/// daemon must keep reading (and discarding) what the client still sends, or the
/// client never sees the 1009 close frame.
#[utoipa::path(
    get,
    path = "/v1/sync",
    operation_id = "sync",
    tag = "sync",
    summary = "automerge-repo sync over WebSocket (an upgrade)",
    description = "A WebSocket upgrade that speaks the automerge-repo sync protocol. The \
        daemon is the server: the client sends `join`, the daemon answers `peer`; each \
        binary WebSocket message is one automerge-repo CBOR message (no length prefix). \
        Browsers cannot set headers on a WebSocket, so the token is passed as `?token=` \
        (compared in constant time; `Authorization: Bearer` also works). Any request with \
        an `Origin` header not listed in `[api] allowed_origins` is refused with \
        `403 forbidden_origin`, because any web page may open `ws://127.0.0.1`. Bad frames \
        close the socket with a reason: a text frame 1003, a message over 32 MiB 1009, \
        broken framing 1002, an undecodable message or a protocol violation 1008, a client \
        that does not read what it is sent 1013; daemon shutdown 1001.",
    security(()),
    params(("token" = String, Query,
        description = "The token in `<data_dir>/api.token` (or send `Authorization: Bearer`)")),
    responses(
        (status = 101, description = "Switching protocols: the automerge-repo session begins"),
        (status = 400, description = "Not a WebSocket upgrade (`not_websocket`)", body = ErrorBody),
        (status = 401, response = super::openapi::Unauthorized),
        (status = 403, description = "The request's `Origin` is not in `[api] allowed_origins` (`forbidden_origin`)", body = ErrorBody),
    )
)]
pub(super) async fn sync(
    State(state): State<AppState>,
    query: QueryPairs,
    headers: HeaderMap,
    mut request: Request,
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
    let key = match upgrade_key(request.method(), &headers) {
        Ok(key) => key,
        Err(why) => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "not_websocket",
                format!("/v1/sync is a WebSocket endpoint: {why}"),
            )
            .into_response();
        }
    };
    let on_upgrade = hyper::upgrade::on(&mut request);
    let max = state.config.max_sync_message_bytes;
    let node = state.node.clone();
    let stopping = state.stopping.clone();
    let metrics = state.sync_sockets.clone();
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(error) => {
                tracing::debug!(%error, "sync socket upgrade failed");
                return;
            }
        };
        let config = WebSocketConfig::default()
            .max_message_size(Some(max))
            .max_frame_size(Some(max));
        let socket =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await;
        metrics.opened.fetch_add(1, Ordering::Relaxed);
        metrics.open.fetch_add(1, Ordering::Relaxed);
        if serve_socket(socket, node, stopping).await == Ending::ProtocolError {
            metrics
                .closed_for_protocol_errors
                .fetch_add(1, Ordering::Relaxed);
        }
        metrics.open.fetch_sub(1, Ordering::Relaxed);
    });
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

/// The `Sec-WebSocket-Key` of a valid HTTP/1.1 WebSocket upgrade request (RFC 6455 4.2.1).
fn upgrade_key(method: &Method, headers: &HeaderMap) -> Result<HeaderValue, &'static str> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if method != Method::GET {
        return Err("the request method must be GET");
    }
    if !has_token(header::CONNECTION, "upgrade") {
        return Err("the `Connection` header must include `upgrade`");
    }
    if !has_token(header::UPGRADE, "websocket") {
        return Err("the `Upgrade` header must be `websocket`");
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err("the `Sec-WebSocket-Version` header must be 13");
    }
    headers
        .get(header::SEC_WEBSOCKET_KEY)
        .cloned()
        .ok_or("the `Sec-WebSocket-Key` header is missing")
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
    /// The client or the node closed it, the client went away, or the daemon is stopping.
    Normal,
    /// The client broke the protocol (text, oversized or undecodable frames).
    ProtocolError,
}

/// Moves frames between the socket and an attached node connection until either ends.
async fn serve_socket(
    mut socket: Socket,
    node: NodeHandle,
    mut stopping: watch::Receiver<bool>,
) -> Ending {
    static SESSIONS: AtomicU64 = AtomicU64::new(0);
    let label = format!("websocket #{}", SESSIONS.fetch_add(1, Ordering::Relaxed));
    let mut conn = match node.attach(AttachRole::Responder, label.clone()).await {
        Ok(conn) => conn,
        Err(error) => {
            close(&mut socket, CloseCode::Away, &error.to_string()).await;
            return Ending::Normal;
        }
    };
    loop {
        tokio::select! {
            message = socket.next() => match message {
                None => return Ending::Normal,
                Some(Err(error)) => return read_failed(socket, &label, error).await,
                Some(Ok(Message::Binary(frame))) => {
                    if conn.send(frame).await.is_err() {
                        let reason = conn.close_reason().unwrap_or_else(|| "connection closed".into());
                        close(&mut socket, CloseCode::Policy, &reason).await;
                        return Ending::ProtocolError;
                    }
                }
                Some(Ok(Message::Text(_))) => {
                    tracing::warn!(session = %label, "sync socket closed: text frame");
                    close(
                        &mut socket,
                        CloseCode::Unsupported,
                        "text frames are not automerge-repo messages; send binary CBOR",
                    )
                    .await;
                    return Ending::ProtocolError;
                }
                Some(Ok(Message::Close(_))) => {
                    // Sends the reply tungstenite queued, completing the handshake.
                    let _ = socket.close(None).await;
                    return Ending::Normal;
                }
                // Pings are answered by the WebSocket layer itself.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
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
                        None => (CloseCode::Away, "the node stopped".to_owned()),
                        Some(reason) if misbehaved => (CloseCode::Policy, reason),
                        Some(reason) if reason.contains("slow consumer") => (CloseCode::Again, reason),
                        Some(reason) => (CloseCode::Normal, reason),
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
                close(&mut socket, CloseCode::Away, "the daemon is shutting down").await;
                return Ending::Normal;
            }
        }
    }
}

/// Reading from the client failed: it went away, or it broke the protocol.
async fn read_failed(mut socket: Socket, label: &str, error: tungstenite::Error) -> Ending {
    match error {
        tungstenite::Error::Capacity(CapacityError::MessageTooLong { size, max_size }) => {
            tracing::warn!(session = %label, size, max_size, "sync socket closed: message too large");
            let reason = format!("message of {size} bytes is over the limit of {max_size}");
            close(&mut socket, CloseCode::Size, &reason).await;
            drain(socket).await;
            Ending::ProtocolError
        }
        // Gone without a close handshake: a closed tab, a killed process, a dropped
        // network. Normal for clients; nothing to answer.
        tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake)
        | tungstenite::Error::Io(_)
        | tungstenite::Error::ConnectionClosed
        | tungstenite::Error::AlreadyClosed => {
            tracing::debug!(session = %label, %error, "sync socket client went away");
            Ending::Normal
        }
        error => {
            tracing::warn!(session = %label, %error, "sync socket closed: bad frame");
            close(
                &mut socket,
                CloseCode::Protocol,
                &format!("bad frame: {error}"),
            )
            .await;
            drain(socket).await;
            Ending::ProtocolError
        }
    }
}

/// Half-closes the connection and reads (discarding) what the client still sends, until
/// it closes too or a bound is reached; see [`MAX_DRAIN_BYTES`].
async fn drain(mut socket: Socket) {
    let io = socket.get_mut();
    let _ = io.shutdown().await;
    let mut buffer = vec![0u8; 64 * 1024];
    let mut drained = 0u64;
    let _ = tokio::time::timeout(DRAIN_GUARD, async {
        while drained < MAX_DRAIN_BYTES {
            match io.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => drained += n as u64,
            }
        }
    })
    .await;
}

/// Resolves once the server starts shutting down (or is gone).
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stop| *stop).await.map(|_| ());
}

async fn close(socket: &mut Socket, code: CloseCode, reason: &str) {
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
