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
use std::path::Path;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use futures::{SinkExt as _, StreamExt as _};
use peerdoc_core::endpoint::{Breaker, EndpointPolicy, EndpointState};
use peerdoc_node::{AttachRole, Multiaddr, NodeEvent, NodeHandle};
use rand::RngCore;
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite;

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

impl fmt::Display for CloudEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::SyncServer(url) => f.write_str(url),
            Self::Libp2p(addr) => write!(f, "{addr}"),
        }
    }
}

/// One endpoint's state as `/v1/status` shows it.
#[derive(Debug, Clone, Serialize)]
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
        .attach(AttachRole::Initiator, format!("cloud {url}"))
        .await
        .map_err(|e| e.to_string())?;
    Ok(Box::pin(pump_sync_server(socket, conn, url)))
}

/// Which server certificates `wss://` endpoints accept: rustls with the Mozilla root
/// store (`webpki-roots`), plus the CAs of `cloud.ca_file` if one is set. Built once per
/// daemon and shared by every dialer (cheap to clone).
///
/// The crypto provider is named (aws-lc-rs, the one libp2p already builds) rather than
/// taken from the process default, which panics when a build enables two.
#[derive(Clone)]
pub struct TlsTrust {
    config: Arc<rustls::ClientConfig>,
    extra_cas: usize,
}

impl fmt::Debug for TlsTrust {
    // The config's own Debug would list every root.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsTrust")
            .field("webpki_roots", &webpki_roots::TLS_SERVER_ROOTS.len())
            .field("extra_cas", &self.extra_cas)
            .finish()
    }
}

impl TlsTrust {
    /// The Mozilla roots only.
    pub fn webpki_roots() -> Result<Self, String> {
        Self::with_extra_cas(Vec::new())
    }

    /// The Mozilla roots and every certificate in the PEM file `ca_file`. An unreadable
    /// file, a malformed PEM block, a certificate rustls cannot use as a trust anchor, or
    /// a file with no `CERTIFICATE` block is an error saying which (the caller names the
    /// file).
    pub fn with_ca_file(ca_file: &Path) -> Result<Self, String> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject as _;
        let pem = std::fs::read(ca_file).map_err(|e| format!("cannot read it: {e}"))?;
        let cas = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("not a PEM file: {e}"))?;
        if cas.is_empty() {
            return Err(
                "no certificate in it (expected PEM `-----BEGIN CERTIFICATE-----` blocks)"
                    .to_owned(),
            );
        }
        Self::with_extra_cas(cas)
    }

    fn with_extra_cas(
        cas: Vec<rustls::pki_types::CertificateDer<'static>>,
    ) -> Result<Self, String> {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let extra_cas = cas.len();
        for (n, ca) in cas.into_iter().enumerate() {
            roots.add(ca).map_err(|e| {
                format!(
                    "certificate {} of {extra_cas} is not a usable CA certificate ({e})",
                    n + 1
                )
            })?;
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            config: Arc::new(config),
            extra_cas,
        })
    }
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
    // Ignored for ws:// URLs.
    let connector = tokio_tungstenite::Connector::Rustls(tls.config.clone());
    let (socket, _) =
        tokio_tungstenite::connect_async_tls_with_config(url, Some(config), true, Some(connector))
            .await
            .map_err(|e| describe_connect_error(&e))?;
    Ok(socket)
}

/// A failed attempt in words for `last_error`: a TLS failure says what was wrong with
/// the server's certificate and what to do, keeping rustls' own text.
fn describe_connect_error(error: &tungstenite::Error) -> String {
    use rustls::CertificateError as Cert;
    let tls = match error {
        tungstenite::Error::Io(io) => io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        _ => None,
    };
    let Some(tls) = tls else {
        return error.to_string();
    };
    match tls {
        rustls::Error::InvalidCertificate(Cert::UnknownIssuer) => format!(
            "TLS: the server's certificate is not signed by a CA this daemon trusts \
             (the Mozilla roots, plus cloud.ca_file if set) ({tls})"
        ),
        rustls::Error::InvalidCertificate(
            Cert::NotValidForName | Cert::NotValidForNameContext { .. },
        ) => format!("TLS: the server's certificate is for another host name ({tls})"),
        rustls::Error::InvalidCertificate(Cert::Expired | Cert::ExpiredContext { .. }) => {
            format!("TLS: the server's certificate has expired ({tls})")
        }
        rustls::Error::InvalidCertificate(_) => {
            format!("TLS: the server's certificate was rejected ({tls})")
        }
        _ => format!("TLS handshake failed ({tls})"),
    }
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

    /// A private CA (written as PEM into `dir`) and a server certificate it signed for
    /// 127.0.0.1 and localhost.
    struct PrivateCa {
        ca_file: std::path::PathBuf,
        server_config: Arc<rustls::ServerConfig>,
    }

    fn private_ca(dir: &Path) -> PrivateCa {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "peerdoc test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let server_key = KeyPair::generate().unwrap();
        let server = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap()
            .signed_by(&server_key, &ca, &ca_key)
            .unwrap();
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let server_config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![server.der().clone()], key)
            .unwrap();
        PrivateCa {
            ca_file,
            server_config: Arc::new(server_config),
        }
    }

    /// A `wss://` server on 127.0.0.1 that echoes binary frames; the port, and a channel
    /// that reports each accepted connection's TLS + WebSocket handshake result.
    async fn wss_echo_server(
        config: Arc<rustls::ServerConfig>,
    ) -> (u16, mpsc::UnboundedReceiver<Result<(), String>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let (handshakes_tx, handshakes) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let handshakes_tx = handshakes_tx.clone();
                tokio::spawn(async move {
                    let tls = match acceptor.accept(tcp).await {
                        Ok(tls) => tls,
                        Err(e) => {
                            let _ = handshakes_tx.send(Err(format!("TLS: {e}")));
                            return;
                        }
                    };
                    let mut socket = match tokio_tungstenite::accept_async(tls).await {
                        Ok(socket) => socket,
                        Err(e) => {
                            let _ = handshakes_tx.send(Err(format!("WebSocket: {e}")));
                            return;
                        }
                    };
                    let _ = handshakes_tx.send(Ok(()));
                    while let Some(Ok(message)) = socket.next().await {
                        if message.is_binary() && socket.send(message).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        (port, handshakes)
    }

    #[tokio::test]
    async fn a_wss_server_signed_by_the_ca_file_is_trusted_and_a_frame_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let ca = private_ca(dir.path());
        let (port, mut handshakes) = wss_echo_server(ca.server_config).await;
        let tls = TlsTrust::with_ca_file(&ca.ca_file).unwrap();

        let mut socket = open_socket(&format!("wss://127.0.0.1:{port}/"), 1 << 20, &tls)
            .await
            .unwrap();
        assert_eq!(handshakes.recv().await, Some(Ok(())));
        assert!(matches!(
            socket.get_ref(),
            tokio_tungstenite::MaybeTlsStream::Rustls(_)
        ));
        let frame = tungstenite::Bytes::from_static(b"\x85\xa4type\xa4join");
        socket
            .send(tungstenite::Message::Binary(frame.clone()))
            .await
            .unwrap();
        let echoed = socket.next().await.unwrap().unwrap();
        assert_eq!(echoed, tungstenite::Message::Binary(frame));

        // The host name in the URL is checked too: `localhost` is in the certificate.
        open_socket(&format!("wss://localhost:{port}/"), 1 << 20, &tls)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn without_the_ca_file_a_private_certificate_is_refused_in_plain_words() {
        let dir = tempfile::tempdir().unwrap();
        let ca = private_ca(dir.path());
        let (port, mut handshakes) = wss_echo_server(ca.server_config).await;
        let tls = TlsTrust::webpki_roots().unwrap();

        let Err(error) = open_socket(&format!("wss://127.0.0.1:{port}/"), 1 << 20, &tls).await
        else {
            panic!("a certificate from a private CA was trusted without cloud.ca_file")
        };
        assert!(
            error.contains("not signed by a CA this daemon trusts"),
            "{error}"
        );
        assert!(error.contains("UnknownIssuer"), "{error}");
        assert!(error.contains("cloud.ca_file"), "{error}");
        // The server saw the client give up during the TLS handshake.
        let refused = handshakes.recv().await.unwrap().unwrap_err();
        assert!(refused.starts_with("TLS"), "{refused}");
    }

    #[test]
    fn a_ca_file_that_is_missing_or_holds_no_certificate_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = TlsTrust::with_ca_file(&dir.path().join("nope.pem")).unwrap_err();
        assert!(missing.contains("cannot read it"), "{missing}");

        let key_only = dir.path().join("key.pem");
        let key = rcgen::KeyPair::generate().unwrap();
        std::fs::write(&key_only, key.serialize_pem()).unwrap();
        let empty = TlsTrust::with_ca_file(&key_only).unwrap_err();
        assert!(empty.contains("no certificate"), "{empty}");

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let bad = TlsTrust::with_ca_file(&garbage).unwrap_err();
        assert!(bad.contains("not a PEM file"), "{bad}");

        let not_a_certificate = dir.path().join("not-a-certificate.pem");
        std::fs::write(
            &not_a_certificate,
            "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let bad = TlsTrust::with_ca_file(&not_a_certificate).unwrap_err();
        assert!(bad.contains("certificate 1 of 1"), "{bad}");

        let truncated = dir.path().join("truncated.pem");
        std::fs::write(&truncated, "-----BEGIN CERTIFICATE-----\nMIIB\n").unwrap();
        let bad = TlsTrust::with_ca_file(&truncated).unwrap_err();
        assert!(bad.contains("not a PEM file"), "{bad}");
    }
}
