//! The API's accept loop: the axum router served by hyper's HTTP/1 server, with the limits
//! `axum::serve` leaves out.
//!
//! - **Header timeout.** A connection that has not sent a whole request head within
//!   [`Limits::header_timeout`] is closed, idle keep-alive connections included (hyper
//!   starts the clock whenever it waits for a head). Without it, half-sent requests were
//!   held for as long as the client liked.
//! - **Body timeout.** A request body that stalls for [`Limits::body_idle_timeout`] fails
//!   the request (`400`, JSON) instead of holding its handler ([`IdleBody`]).
//! - **A connection cap.** At most [`Limits::max_connections`] HTTP connections at once;
//!   beyond that, new ones wait in the kernel's backlog until one closes, with a log line
//!   (at most one a minute) that says so. An upgraded WebSocket no longer counts: it has
//!   left hyper and authenticated already.
//! - **JSON for hyper's own errors.** A request hyper cannot parse (a bad `Content-Length`,
//!   a NUL in a header, a head too large) never reaches the router: hyper answers it
//!   itself with an empty body and closes. [`JsonErrors`] sits under hyper on the socket
//!   and turns exactly those answers (a 4xx head with `content-length: 0` and no
//!   `content-type`, which no route produces: `observe` gives every error a JSON body)
//!   into the usual `{code, message}`.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// How patient the API is with its clients.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// HTTP connections served at once (WebSockets, once upgraded, not counted).
    pub max_connections: usize,
    /// Time to send a whole request head, and the longest a kept-alive connection idles.
    pub header_timeout: Duration,
    /// The longest a request body may send nothing.
    pub body_idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 512,
            header_timeout: Duration::from_secs(10),
            body_idle_timeout: Duration::from_secs(30),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then lets every open request
/// finish (see the module doc for the limits).
pub(super) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (stop_tx, stop_rx) = watch::channel(());
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    let mut last_full_warning: Option<Instant> = None;
    loop {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if last_full_warning.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
                    last_full_warning = Some(Instant::now());
                    tracing::warn!(
                        limit = limits.max_connections,
                        "the API has as many connections open as it takes (api.max_connections); \
                         new ones wait until one closes"
                    );
                }
                tokio::select! {
                    permit = permits.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                    () = &mut shutdown => break,
                }
            }
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    if !is_connection_error(&error) {
                        // Out of file descriptors, most likely: wait rather than spin.
                        tracing::warn!(%error, "accepting an API connection failed; trying again in 1 s");
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                            () = &mut shutdown => break,
                        }
                    }
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let mut stop = stop_rx.clone();
        connections.spawn(async move {
            let _permit = permit;
            let io = TokioIo::new(JsonErrors::new(stream));
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                // One buffer per write, so a response head starts each write JsonErrors sees.
                .writev(false);
            let mut connection = pin!(builder.serve_connection(io, service).with_upgrades());
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::trace!(%error, "API connection ended");
                    }
                }
                _ = stop.changed() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    drop(stop_tx);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Errors that end one connection attempt, not the listener.
fn is_connection_error(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// Middleware: every request body fails once it sends nothing for `idle`.
pub(super) async fn idle_body(idle: Duration, request: Request, next: Next) -> Response {
    let request = request.map(|body| {
        Body::new(IdleBody {
            inner: body,
            idle,
            timer: None,
        })
    });
    next.run(request).await
}

/// A request body that errors after `idle` without a frame.
struct IdleBody {
    inner: Body,
    idle: Duration,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl http_body::Body for IdleBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.timer = None;
            return Poll::Ready(frame);
        }
        let idle = this.idle;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
        ready!(timer.as_mut().poll(cx));
        Poll::Ready(Some(Err(axum::Error::new(format!(
            "the request body sent nothing for {} s",
            idle.as_secs()
        )))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The socket under hyper; rewrites hyper's own error answers to JSON (module doc).
struct JsonErrors {
    inner: TcpStream,
    /// Bytes of a rewritten answer not yet written.
    pending: Vec<u8>,
    written: usize,
}

impl JsonErrors {
    fn new(inner: TcpStream) -> Self {
        Self {
            inner,
            pending: Vec::new(),
            written: 0,
        }
    }

    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while self.written < self.pending.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for JsonErrors {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for JsonErrors {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        if let Some(rewritten) = rewrite_bare_error(buf) {
            self.pending = rewritten;
            // Whatever is not written now goes out on the next write, flush or shutdown.
            if let Poll::Ready(Err(error)) = self.poll_pending(cx) {
                return Poll::Ready(Err(error));
            }
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The JSON version of `buf` when it is exactly a response head hyper made by itself: a
/// 4xx status, `content-length: 0`, no `content-type` and nothing after the head.
fn rewrite_bare_error(buf: &[u8]) -> Option<Vec<u8>> {
    let rest = buf
        .strip_prefix(b"HTTP/1.1 4")
        .or_else(|| buf.strip_prefix(b"HTTP/1.0 4"))?;
    let head_len = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    if head_len != buf.len() || rest.len() < 2 {
        return None;
    }
    let head = std::str::from_utf8(&buf[..head_len]).ok()?;
    let mut lines = head.split("\r\n").filter(|line| !line.is_empty());
    let status_line = lines.next()?;
    let headers: Vec<&str> = lines.collect();
    let named = |name: &str, line: &str| {
        line.split_once(':')
            .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case(name))
    };
    let bare = headers
        .iter()
        .any(|line| named("content-length", line) && line.ends_with(": 0"))
        && !headers.iter().any(|line| named("content-type", line));
    if !bare {
        return None;
    }
    let status: u16 = status_line.get(9..12)?.parse().ok()?;
    let (code, message) = match status {
        414 => (
            "uri_too_long",
            "the request's URL is longer than this server reads",
        ),
        431 => (
            "headers_too_large",
            "the request's headers are larger than this server reads",
        ),
        _ => (
            "bad_request",
            "the request is not valid HTTP/1.1 (its request line, a header or its \
             Content-Length)",
        ),
    };
    let body = serde_json::json!({ "code": code, "message": message }).to_string();
    let mut out = format!("{status_line}\r\n");
    for line in headers
        .iter()
        .filter(|line| !named("content-length", line) && !named("connection", line))
    {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str(&format!(
        "content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    ));
    Some(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hyper_s_bare_error_heads_are_rewritten() {
        let bare = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let out = String::from_utf8(rewrite_bare_error(bare).unwrap()).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{head}");
        assert!(head.contains("content-type: application/json"), "{head}");
        assert!(head.contains("date: x"), "{head}");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["code"], "bad_request");

        let too_large =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\r\n";
        let out = String::from_utf8(rewrite_bare_error(too_large).unwrap()).unwrap();
        assert!(out.contains("\"code\":\"headers_too_large\""), "{out}");

        // What the routes answer keeps its own body, and so does everything else.
        for kept in [
            &b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nHTTP/1.1",
            b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Req",
            b"{\"HTTP/1.1 400\"}",
        ] {
            assert_eq!(rewrite_bare_error(kept), None, "{}", String::from_utf8_lossy(kept));
        }
    }
}
