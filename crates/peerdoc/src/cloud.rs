//! Cloud endpoints: keeping a connection to each configured endpoint whenever a path
//! exists.
//!
//! An endpoint is either a `ws://` URL of an automerge-repo sync server (a stock
//! `@automerge/automerge-repo` server with the WebSocket server adapter) or a libp2p
//! multiaddr of another peerdoc node. One dialer task per endpoint follows the schedule
//! of [`EndpointState`] (exponential backoff with jitter, a circuit breaker), on tokio's
//! clock, so tests drive it with `tokio::time::pause()`. The state of each is shared
//! through [`CloudStatus`] for `/v1/status` and `/metrics`.
//!
//! A stock sync server never asks for documents it does not know, so a daemon with a
//! sync-server endpoint pushes it every document, highest priority first (the node's
//! `announce_to_plain_peers`).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use futures::{SinkExt as _, StreamExt as _};
use peerdoc_core::endpoint::{Breaker, EndpointPolicy, EndpointState};
use peerdoc_node::{AttachRole, Multiaddr, NodeEvent, NodeHandle};
use rand::RngCore;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite;

mod tls;

pub use tls::TlsTrust;

/// Longest a single connection attempt may take before it counts as failed.
const CONNECT_GUARD: Duration = Duration::from_secs(30);

/// One configured cloud endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloudEndpoint {
    /// An automerge-repo sync server, `ws://` or `wss://host:port[/path]` (TLS with
    /// rustls; the certificates trusted are [`TlsTrust`]'s).
    SyncServer(String),
    /// A peerdoc node reachable over libp2p.
    Libp2p(Multiaddr),
}

impl FromStr for CloudEndpoint {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.starts_with("ws://") || text.starts_with("wss://") {
            tungstenite::http::Uri::from_str(text)
                .map_err(|e| format!("cloud endpoint {text:?}: {e}"))?;
            Ok(Self::SyncServer(text.to_owned()))
        } else if text.starts_with('/') {
            text.parse()
                .map(Self::Libp2p)
                .map_err(|e| format!("cloud endpoint {text:?}: {e}"))
        } else {
            Err(format!(
                "cloud endpoint {text:?}: expected a ws:// or wss:// URL or a libp2p multiaddr (/ip4/…)"
            ))
        }
    }
}

/// Shows an endpoint with its secrets (`?token=`, `?key=`, a password in the URL)
/// replaced, for status, metrics labels and logs.
impl fmt::Display for CloudEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SyncServer(url) => f.write_str(&redact(url)),
            Self::Libp2p(addr) => write!(f, "{addr}"),
        }
    }
}

/// `url` with the values of secret-looking query parameters and any password replaced.
fn redact(url: &str) -> String {
    const SECRET: [&str; 5] = ["token", "key", "secret", "password", "auth"];
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut out = match base.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((user, host)) if !user.contains('/') => match user.split_once(':') {
                Some((name, _)) => format!("{scheme}://{name}:redacted@{host}"),
                None => base.to_owned(),
            },
            _ => base.to_owned(),
        },
        None => base.to_owned(),
    };
    if let Some(query) = query {
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) if SECRET.iter().any(|s| name.to_ascii_lowercase().contains(s)) => {
                    format!("{name}=redacted")
                }
                _ => pair.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    out
}

/// One endpoint's state, shown by `/v1/status` as a [`crate::api::CloudEndpoint`].
#[derive(Debug, Clone)]
pub struct EndpointReport {
    /// The endpoint as configured.
    pub endpoint: String,
    /// `sync_server` or `libp2p`.
    pub kind: &'static str,
    /// Whether a connection is up.
    pub connected: bool,
    /// The circuit breaker: `{"state": "closed", "failures": n}`, `{"state": "open",
    /// ...}` or `{"state": "half_open"}` (times in the dialer's clock).
    pub breaker: Breaker,
    /// Attempts since the daemon started.
    pub attempts: u64,
    /// Failed attempts since the daemon started.
    pub failures_total: u64,
    /// How long until the next attempt, in ms (none while connected or dialing).
    pub next_attempt_in_ms: Option<u64>,
    /// When a connection last came up, ms since the Unix epoch.
    pub last_success_ms: Option<u64>,
    /// When an attempt last failed, ms since the Unix epoch.
    pub last_failure_ms: Option<u64>,
    /// What the last failure was.
    pub last_error: Option<String>,
}

impl From<&EndpointReport> for crate::api::CloudEndpoint {
    fn from(report: &EndpointReport) -> Self {
        Self {
            endpoint: report.endpoint.clone(),
            kind: report.kind.to_owned(),
            connected: report.connected,
            breaker: report.breaker.into(),
            attempts: report.attempts,
            failures_total: report.failures_total,
            next_attempt_in_ms: report.next_attempt_in_ms,
            last_success_ms: report.last_success_ms,
            last_failure_ms: report.last_failure_ms,
            last_error: report.last_error.clone(),
        }
    }
}

/// Every endpoint's state, shared between the dialers and the API. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct CloudStatus(Arc<Mutex<Vec<EndpointReport>>>);

impl CloudStatus {
    /// Every endpoint's state, in configuration order.
    pub fn snapshot(&self) -> Vec<EndpointReport> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn add(&self, report: EndpointReport) -> usize {
        let mut reports = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        reports.push(report);
        reports.len() - 1
    }

    fn update(&self, index: usize, change: impl FnOnce(&mut EndpointReport)) {
        let mut reports = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(report) = reports.get_mut(index) {
            change(report);
        }
    }
}

/// A connection that came up: resolves when it ends.
pub type Session = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Starts one dialer task per endpoint; `wss://` endpoints all check certificates with
/// `tls`. Abort the handles to stop them.
pub fn start(
    node: &NodeHandle,
    endpoints: &[CloudEndpoint],
    policy: EndpointPolicy,
    status: &CloudStatus,
    max_message_bytes: usize,
    tls: &TlsTrust,
) -> Vec<JoinHandle<()>> {
    endpoints
        .iter()
        .map(|endpoint| {
            let node = node.clone();
            let endpoint = endpoint.clone();
            let rng = Box::new(rand::rngs::StdRng::from_os_rng_or_seed());
            let target = endpoint.clone();
            let tls = tls.clone();
            tokio::spawn(run_dialer(
                endpoint.to_string(),
                kind(&endpoint),
                policy,
                status.clone(),
                rng,
                move || connect(node.clone(), target.clone(), max_message_bytes, tls.clone()),
            ))
        })
        .collect()
}

fn kind(endpoint: &CloudEndpoint) -> &'static str {
    match endpoint {
        CloudEndpoint::SyncServer(_) => "sync_server",
        CloudEndpoint::Libp2p(_) => "libp2p",
    }
}

/// OS entropy, falling back to the clock if the OS has none (jitter only spreads
/// retries; it protects nothing).
trait FromOsRngOrSeed {
    fn from_os_rng_or_seed() -> Self;
}

impl FromOsRngOrSeed for rand::rngs::StdRng {
    fn from_os_rng_or_seed() -> Self {
        use rand::SeedableRng as _;
        use rand::TryRngCore as _;
        let mut seed = [0u8; 32];
        if rand::rngs::OsRng.try_fill_bytes(&mut seed).is_err() {
            let nanos = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            seed[..16].copy_from_slice(&nanos.to_le_bytes());
        }
        Self::from_seed(seed)
    }
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Dials one endpoint forever on the [`EndpointState`] schedule: `connect` makes one
/// attempt and, on success, returns the session (which resolves when the connection
/// ends). Times are tokio's, so a paused clock drives it.
pub async fn run_dialer<F, Fut>(
    endpoint: String,
    kind: &'static str,
    policy: EndpointPolicy,
    status: CloudStatus,
    mut rng: Box<dyn RngCore + Send>,
    mut connect: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Session, String>>,
{
    let start = Instant::now();
    let now_ms = || u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut state = EndpointState::new(0);
    let index = status.add(EndpointReport {
        endpoint: endpoint.clone(),
        kind,
        connected: false,
        breaker: state.breaker(),
        attempts: 0,
        failures_total: 0,
        next_attempt_in_ms: Some(0),
        last_success_ms: None,
        last_failure_ms: None,
        last_error: None,
    });
    let publish = |state: &EndpointState, now: u64, error: Option<String>| {
        status.update(index, |report| {
            report.connected = state.is_connected();
            report.breaker = state.breaker();
            report.attempts = state.attempts;
            report.failures_total = state.failures_total;
            report.next_attempt_in_ms =
                (!state.is_connected()).then(|| state.next_attempt_ms().saturating_sub(now));
            if let Some(error) = error {
                report.last_error = Some(error);
                report.last_failure_ms = Some(epoch_ms());
            }
        });
    };
    loop {
        let now = now_ms();
        if !state.may_attempt(now) {
            tokio::time::sleep_until(start + Duration::from_millis(state.next_attempt_ms())).await;
            continue;
        }
        state.on_attempt(now);
        publish(&state, now, None);
        let attempt = match tokio::time::timeout(CONNECT_GUARD, connect()).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "no connection within {} s",
                CONNECT_GUARD.as_secs()
            )),
        };
        match attempt {
            Ok(session) => {
                state.on_success(now_ms());
                status.update(index, |report| report.last_success_ms = Some(epoch_ms()));
                publish(&state, now_ms(), None);
                tracing::info!(%endpoint, "cloud endpoint connected");
                session.await;
                state.on_disconnected(&policy, now_ms(), &mut *rng);
                publish(&state, now_ms(), None);
                tracing::info!(%endpoint, "cloud endpoint disconnected");
            }
            Err(error) => {
                state.on_failure(&policy, now_ms(), &mut *rng);
                tracing::debug!(
                    %endpoint, %error, breaker = ?state.breaker(),
                    retry_in_ms = state.next_attempt_ms().saturating_sub(now_ms()),
                    "cloud endpoint attempt failed"
                );
                if matches!(state.breaker(), Breaker::Open { .. }) {
                    tracing::warn!(%endpoint, %error, "cloud endpoint unreachable; breaker open");
                }
                publish(&state, now_ms(), Some(error));
            }
        }
    }
}

/// One attempt at `endpoint`.
async fn connect(
    node: NodeHandle,
    endpoint: CloudEndpoint,
    max_message_bytes: usize,
    tls: TlsTrust,
) -> Result<Session, String> {
    match endpoint {
        CloudEndpoint::SyncServer(url) => {
            connect_sync_server(node, url, max_message_bytes, &tls).await
        }
        CloudEndpoint::Libp2p(addr) => connect_libp2p(node, addr).await,
    }
}

async fn connect_sync_server(
    node: NodeHandle,
    url: String,
    max_message_bytes: usize,
    tls: &TlsTrust,
) -> Result<Session, String> {
    let socket = open_socket(&url, max_message_bytes, tls).await?;
    let conn = node
        .attach(AttachRole::Cloud, format!("cloud {}", redact(&url)))
        .await
        .map_err(|e| e.to_string())?;
    Ok(Box::pin(pump_sync_server(socket, conn, redact(&url))))
}

/// The WebSocket handshake (and TLS for `wss://`, checked against `tls`) with a sync
/// server.
async fn open_socket(
    url: &str,
    max_message_bytes: usize,
    tls: &TlsTrust,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    String,
> {
    let config = tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(max_message_bytes))
        .max_frame_size(Some(max_message_bytes));
    let (socket, _) = tokio_tungstenite::connect_async_tls_with_config(
        url,
        Some(config),
        true,
        Some(tls.connector()),
    )
    .await
    .map_err(|e| tls::describe_connect_error(&e))?;
    Ok(socket)
}

/// Moves frames between a sync server's socket and the node until either ends.
async fn pump_sync_server<S>(mut socket: S, mut conn: peerdoc_node::AttachedConnection, url: String)
where
    S: futures::Stream<Item = Result<tungstenite::Message, tungstenite::Error>>
        + futures::Sink<tungstenite::Message>
        + Unpin,
{
    use tungstenite::Message;
    loop {
        tokio::select! {
            message = socket.next() => match message {
                Some(Ok(Message::Binary(frame))) => {
                    if conn.send(frame).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Text(_))) => {
                    tracing::warn!(%url, "sync server sent a text frame; closing");
                    break;
                }
                Some(Ok(Message::Close(_))) | None => break,
                Some(Err(error)) => {
                    tracing::warn!(%url, %error, "sync server connection failed");
                    break;
                }
            },
            frame = conn.recv() => match frame {
                Some(frame) => {
                    if socket.send(Message::Binary(frame)).await.is_err() {
                        break;
                    }
                }
                None => {
                    let reason = conn.close_reason().unwrap_or_default();
                    tracing::info!(%url, %reason, "node closed the sync server connection");
                    break;
                }
            },
        }
    }
    let _ = socket.close().await;
}

async fn connect_libp2p(node: NodeHandle, addr: Multiaddr) -> Result<Session, String> {
    let mut events = node.subscribe();
    let peer = node.dial(addr).await.map_err(|e| e.to_string())?;
    Ok(Box::pin(async move {
        loop {
            match events.recv().await {
                Ok(NodeEvent::PeerDisconnected { peer: gone }) if gone == peer => return,
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    // Events were lost: ask whether the peer is still there.
                    let still = node
                        .peers()
                        .await
                        .is_ok_and(|peers| peers.iter().any(|p| p.peer == peer && p.net.is_some()));
                    if !still {
                        return;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rand::SeedableRng as _;
    use tokio::sync::{mpsc, oneshot};

    use super::*;

    type AttemptFuture = Pin<Box<dyn Future<Output = Result<Session, String>> + Send>>;

    /// What the dialer looked like when an attempt started.
    #[derive(Debug)]
    struct Attempt {
        at_ms: u64,
        breaker: Breaker,
    }

    /// An endpoint that refuses the first `refusals` attempts, then accepts; each
    /// accepted session lasts until the test drops the sender it is handed.
    fn scripted_endpoint(
        refusals: usize,
        status: CloudStatus,
        start: Instant,
    ) -> (
        impl FnMut() -> AttemptFuture,
        mpsc::UnboundedReceiver<Attempt>,
        mpsc::UnboundedReceiver<oneshot::Sender<()>>,
    ) {
        let (attempts_tx, attempts) = mpsc::unbounded_channel();
        let (sessions_tx, sessions) = mpsc::unbounded_channel();
        let made = Arc::new(Mutex::new(0usize));
        let connect = move || {
            let attempts_tx = attempts_tx.clone();
            let sessions_tx = sessions_tx.clone();
            let made = made.clone();
            let status = status.clone();
            Box::pin(async move {
                let n = {
                    let mut made = made.lock().unwrap();
                    *made += 1;
                    *made
                };
                let breaker = status.snapshot()[0].breaker;
                let at_ms = u64::try_from(start.elapsed().as_millis()).unwrap();
                attempts_tx.send(Attempt { at_ms, breaker }).unwrap();
                if n <= refusals {
                    return Err("connection refused".to_owned());
                }
                let (end_tx, end) = oneshot::channel::<()>();
                sessions_tx.send(end_tx).unwrap();
                let session: Session = Box::pin(async move {
                    let _ = end.await;
                });
                Ok(session)
            }) as AttemptFuture
        };
        (connect, attempts, sessions)
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_then_breaker_then_probe_then_redial_after_a_drop() {
        let status = CloudStatus::default();
        let start = Instant::now();
        // Five refusals open the breaker; the first probe is refused too; the second
        // probe is accepted.
        let (connect, mut attempts, mut sessions) = scripted_endpoint(6, status.clone(), start);
        let dialer = tokio::spawn(run_dialer(
            "ws://127.0.0.1:9/".into(),
            "sync_server",
            EndpointPolicy::default(),
            status.clone(),
            Box::new(rand::rngs::StdRng::seed_from_u64(7)),
            connect,
        ));

        let mut times = Vec::new();
        for _ in 0..7 {
            let attempt = attempts.recv().await.unwrap();
            times.push((attempt.at_ms, attempt.breaker));
        }
        assert_eq!(times[0].0, 0, "the first attempt is immediate");
        for n in 1..5 {
            let gap = times[n].0 - times[n - 1].0;
            let ceiling = 1_000u64 << (n - 1);
            assert!(
                (ceiling * 3 / 4..=ceiling * 5 / 4).contains(&gap),
                "gap {n}: {gap} ms, ceiling {ceiling}"
            );
            assert_eq!(
                times[n].1,
                Breaker::Closed { failures: n as u32 },
                "{times:?}"
            );
        }
        // The fifth refusal opened the breaker: the probe waits 30 s, exactly.
        assert_eq!(times[5].0 - times[4].0, 30_000, "{times:?}");
        assert_eq!(times[5].1, Breaker::HalfOpen);
        // The refused probe reopens it for another 30 s.
        assert_eq!(times[6].0 - times[5].0, 30_000, "{times:?}");
        assert_eq!(times[6].1, Breaker::HalfOpen);

        let end_session = sessions.recv().await.unwrap();
        tokio::task::yield_now().await;
        let report = &status.snapshot()[0];
        assert!(report.connected);
        assert_eq!(report.breaker, Breaker::Closed { failures: 0 });
        assert_eq!(report.attempts, 7);
        assert_eq!(report.failures_total, 6);
        assert!(report.last_success_ms.is_some());
        assert_eq!(report.last_error.as_deref(), Some("connection refused"));
        assert_eq!(report.next_attempt_in_ms, None);

        // The connection drops: redial after one jittered base delay, breaker closed.
        let dropped_at = u64::try_from(start.elapsed().as_millis()).unwrap();
        drop(end_session);
        let redial = attempts.recv().await.unwrap();
        let gap = redial.at_ms - dropped_at;
        assert!((750..=1_250).contains(&gap), "redial after {gap} ms");
        assert_eq!(redial.breaker, Breaker::Closed { failures: 0 });
        dialer.abort();
    }

    #[test]
    fn endpoints_parse_or_say_why_not() {
        assert!(matches!(
            "ws://127.0.0.1:3030".parse(),
            Ok(CloudEndpoint::SyncServer(_))
        ));
        assert!(matches!(
            "/ip4/127.0.0.1/tcp/4001".parse(),
            Ok(CloudEndpoint::Libp2p(_))
        ));
        assert!(matches!(
            "wss://sync.example/".parse(),
            Ok(CloudEndpoint::SyncServer(_))
        ));
        let other = "http://x".parse::<CloudEndpoint>().unwrap_err();
        assert!(other.contains("expected a ws://"), "{other}");
    }

    #[test]
    fn secrets_in_an_endpoint_url_are_not_shown() {
        let shown = |text: &str| text.parse::<CloudEndpoint>().unwrap().to_string();
        assert_eq!(
            shown("wss://cloud.example/v1/sync?token=s3cret&room=a"),
            "wss://cloud.example/v1/sync?token=redacted&room=a"
        );
        assert_eq!(
            shown("wss://team:hunter2@cloud.example/?apiKey=x"),
            "wss://team:redacted@cloud.example/?apiKey=redacted"
        );
        assert_eq!(shown("ws://127.0.0.1:3030/"), "ws://127.0.0.1:3030/");
    }

    /// TLS is built in: a `wss://` attempt at a server that is not speaking TLS fails
    /// with an error (no panic for a missing crypto provider).
    #[tokio::test]
    async fn a_wss_attempt_fails_cleanly_when_the_server_speaks_no_tls() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                drop(socket);
            }
        });
        let tls = TlsTrust::webpki_roots().unwrap();
        let Err(error) = open_socket(&format!("wss://127.0.0.1:{port}/"), 1 << 20, &tls).await
        else {
            panic!("no TLS server there")
        };
        assert!(!error.is_empty());
    }
}
