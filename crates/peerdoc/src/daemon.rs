//! `peerdoc run`: start the node and the API, wait for a signal, shut down cleanly.
//!
//! Order of startup: configuration, logging, the API token, the API socket (so a taken
//! port fails before the store is opened), the node, then `<data_dir>/api.addr`. On
//! SIGINT/SIGTERM the API stops taking requests, the node flushes and closes the store,
//! and `api.addr` is removed. Every failure is one line on stderr and exit code 1.

use std::fmt;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use peerdoc_node::{Node, NodeError};
use rand::TryRngCore as _;
use tokio::net::TcpListener;

use crate::cli::args::{GlobalArgs, RunArgs};
use crate::config::{ConfigError, DaemonConfig, Resolved, TransportGate};
use crate::server::{self, AppState, ServerConfig};
use crate::team::{TeamFile, TeamMode, TeamService};

mod datadir;
mod encrypt;
mod logfile;
mod ready;
mod store_copy;

pub use encrypt::encrypt_store;
pub(crate) use ready::dialable;
pub use store_copy::copy_store;

/// File in the data directory holding the API's bearer token.
pub const TOKEN_FILE: &str = "api.token";
/// File in the data directory holding the API's URL while the daemon runs.
pub const ADDR_FILE: &str = "api.addr";
/// File in the data directory holding the daemon's process id while it starts.
pub const STARTING_FILE: &str = ready::STARTING_FILE;

/// Why the daemon could not start or stopped with an error. Displayed as the one line
/// the user sees.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The configuration is invalid.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The API address is taken.
    #[error(
        "the API address {addr} is already in use (another peerdoc daemon?); \
         choose another with --api-listen or `[api] listen` in the config"
    )]
    ApiPortInUse {
        /// The address.
        addr: SocketAddr,
    },
    /// The API socket could not be bound for another reason.
    #[error("cannot listen on {addr} for the API: {source}")]
    ApiBind {
        /// The address.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The node could not start (the data directory is locked, the store is damaged, ...).
    #[error("{0}")]
    Node(NodeError),
    /// A file in the data directory could not be written or read.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The token file exists but holds no token.
    #[error("{path} is empty or not a token; delete it to have a new one created")]
    BadToken {
        /// The file.
        path: PathBuf,
    },
    /// The async runtime could not be built, or the server failed.
    #[error("{0}")]
    Runtime(String),
    /// The team file or the device identity could not be read.
    #[error("{0}")]
    Team(String),
    /// The log file could not be opened.
    #[error("cannot write the log file {path}: {source}; choose another with --log-file")]
    LogFile {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Another daemon has this data directory.
    #[error(
        "data directory {} is in use by another peerdoc daemon{}; stop it first, or give \
         this one another directory with --data-dir",
        path.display(),
        pid.map(|pid| format!(" (pid {pid})")).unwrap_or_default()
    )]
    DataDirInUse {
        /// The data directory.
        path: PathBuf,
        /// The other daemon's process id, when its lock file says.
        pid: Option<u32>,
    },
    /// `peerdoc store encrypt` could not encrypt the store (nothing was changed).
    #[error("{0}")]
    Encrypt(String),
    /// `peerdoc store copy` could not copy (what was written is marked unfinished).
    #[error("{0}")]
    StoreCopy(String),
    /// The enrolment listener could not be bound.
    #[error(
        "cannot accept invite codes on {addr}: {source}; choose another address with \
         --set team.enrol_listen=ADDR (port 0 picks one)"
    )]
    EnrolBind {
        /// The address.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// How long a stopping daemon waits for the store's final flush.
const FINAL_FLUSH_GUARD: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs the daemon until SIGINT/SIGTERM. Exit code 0 after a clean shutdown, 1 on any
/// error (printed as one line on stderr).
pub fn main(global: &GlobalArgs, run: &RunArgs) -> ExitCode {
    match run_daemon(global, run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // The message alone: a log line repeating it would only add noise.
            eprintln!("peerdoc: {}", OneLine(&error));
            ExitCode::FAILURE
        }
    }
}

/// A panic (sled's, caught and turned into an error by the store, or a bug) is logged as
/// one line with where it happened, instead of the default multi-line report.
fn one_line_panics() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        let thread = std::thread::current();
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(
            thread = thread.name().unwrap_or("unnamed"),
            %location,
            "panic: {}",
            OneLine(&message)
        );
    }));
}

/// Displays an error with its newlines folded, so it stays one line.
struct OneLine<'a, E>(&'a E);

impl<E: fmt::Display> fmt::Display for OneLine<'_, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0.to_string();
        f.write_str(&text.split_whitespace().collect::<Vec<_>>().join(" "))
    }
}

fn run_daemon(global: &GlobalArgs, run: &RunArgs) -> Result<(), DaemonError> {
    let resolved = DaemonConfig::load(global, run)?;
    datadir::private_umask();
    init_tracing(&resolved.config.log, resolved.config.log_file.as_deref())?;
    one_line_panics();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| DaemonError::Runtime(format!("starting the async runtime: {e}")))?;
    runtime.block_on(run_async(resolved))
}

fn init_tracing(filter: &str, log_file: Option<&Path>) -> Result<(), DaemonError> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let file = match log_file {
        Some(path) => {
            Some(
                logfile::RotatingFile::open(path).map_err(|source| DaemonError::LogFile {
                    path: path.to_owned(),
                    source,
                })?,
            )
        }
        None => None,
    };
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false);
    let file = file.map(|file| {
        tracing_subscriber::fmt::layer()
            .with_writer(file)
            .with_ansi(false)
            .boxed()
    });
    // A second daemon in one process (tests) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(file)
        .try_init();
    Ok(())
}

async fn run_async(mut resolved: Resolved) -> Result<(), DaemonError> {
    let data_dir = resolved.data_dir.clone();
    let cloud_tls = resolved.cloud_tls()?;
    std::fs::create_dir_all(&data_dir).map_err(|source| DaemonError::File {
        path: data_dir.clone(),
        source,
    })?;
    // Before anything is created in it: a second daemon must not write a token.
    let _lock = datadir::DataDirLock::take(&data_dir)?;
    datadir::tighten(&data_dir);
    encrypt::recover_interrupted(&data_dir)?;
    let starting = ready::Starting::mark(&data_dir);
    ready::choose_listen_port(&mut resolved);
    let mode = resolved.team_mode();
    let keypair = peerdoc_net::load_or_create_identity(&data_dir.join("identity.key"))
        .map_err(|e| DaemonError::Team(e.to_string()))?;
    let team_file = match mode {
        TeamMode::Managed => TeamFile::load(&data_dir).map_err(DaemonError::Team)?,
        TeamMode::Open | TeamMode::SharedKey => None,
    };
    let grace_ms = resolved
        .config
        .team
        .previous_key_grace_secs
        .saturating_mul(1000);
    let mut node_config = resolved.node_config(transport_gate(
        mode,
        team_file.as_ref(),
        &keypair,
        grace_ms,
    )?)?;
    node_config.store_secret = resolved.store_secret(&crate::config::SecretSources::process())?;
    node_config.postgres = resolved.postgres()?;
    let token = load_or_create_token(&data_dir.join(TOKEN_FILE))?;
    let addr = resolved.api_listen;
    if !addr.ip().is_loopback() {
        tracing::warn!(
            %addr,
            "the API listens beyond this machine; anyone who can reach it and holds the token controls every document"
        );
    }
    let listener = TcpListener::bind(addr).await.map_err(|source| {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            DaemonError::ApiPortInUse { addr }
        } else {
            DaemonError::ApiBind { addr, source }
        }
    })?;
    let bound = listener
        .local_addr()
        .map_err(|source| DaemonError::ApiBind { addr, source })?;
    let node = Node::start(node_config).await.map_err(DaemonError::Node)?;
    let team = TeamService::new(
        mode,
        data_dir.clone(),
        keypair,
        node.handle(),
        team_file,
        resolved.config.team.device_name.clone(),
        resolved.config.team.previous_key_grace_secs,
    );
    team.set_hub(resolved.config.team.hub);
    team.set_probe(resolved.config.team.probe_subnet);
    team.start().await;
    if mode == TeamMode::Managed {
        let enrol: SocketAddr = resolved
            .config
            .team
            .enrol_listen
            .parse()
            .map_err(|_| DaemonError::Runtime("team.enrol_listen is not an address".into()))?;
        let mut bound = crate::team::bind_enrolment(team.clone(), enrol).await;
        let default_port = enrol.port() == crate::config::DEFAULT_ENROL_PORT;
        if default_port
            && let Err(error) = &bound
            && error.kind() == std::io::ErrorKind::AddrInUse
        {
            // A second daemon on one machine: friendlier to pick a port than to fail.
            tracing::warn!(
                port = enrol.port(),
                "the invite port is taken (another peerdoc on this machine?); accepting invite \
                 codes on a port the OS picks instead: codes made here stop working when this \
                 daemon restarts"
            );
            bound = crate::team::bind_enrolment(team.clone(), SocketAddr::new(enrol.ip(), 0)).await;
        }
        if let Err(source) = bound {
            node.shutdown().await;
            return Err(DaemonError::EnrolBind {
                addr: enrol,
                source,
            });
        }
    }
    let api_url = format!("http://{}", connectable(bound));
    let mut server_config = ServerConfig::new(token, api_url.clone());
    server_config.max_body_bytes = resolved.config.api.max_body_bytes;
    server_config.limits = resolved.config.api.limits();
    server_config.store_dir = Some(data_dir.join("store"));
    server_config.allowed_origins = resolved.config.api.allowed_origins.clone();
    let cloud_status = crate::cloud::CloudStatus::default();
    server_config.cloud = Some(cloud_status.clone());
    let dialers = crate::cloud::start(
        &node.handle(),
        &resolved.config.cloud.parsed()?,
        resolved.config.cloud.retry,
        &cloud_status,
        server_config.max_sync_message_bytes,
        &cloud_tls,
    );
    let shared_meta = crate::shared_meta::SharedMeta::start(node.handle());
    let state = AppState::new(node.handle(), server_config)
        .with_team(team.clone())
        .with_shared_meta(shared_meta);
    let addr_file = data_dir.join(ADDR_FILE);
    if let Err(error) = write_atomically(&addr_file, format!("{api_url}\n").as_bytes(), false) {
        node.shutdown().await;
        return Err(error);
    }
    drop(starting);
    let listening = match node.handle().status().await {
        Ok(status) => status.listen_addrs,
        Err(_) => Vec::new(),
    };
    ready::remember_port(&resolved, &listening);
    tracing::info!(
        api = %api_url,
        peer = %node.peer_id(),
        data_dir = %data_dir.display(),
        config = ?resolved.file,
        "peerdoc daemon running"
    );
    let dialable = ready::dialable(&listening, &node.peer_id().to_string());
    println!("{}", ready::ready_line(&api_url, &dialable));
    let served = server::serve(listener, state, shutdown_signal()).await;
    tracing::info!("stopping: flushing the store");
    for dialer in &dialers {
        dialer.abort();
    }
    // A store that never finishes its last flush (sled on a disk that filled behind
    // its back) must not keep the daemon from exiting: say so, and exit 1.
    let closed = match tokio::time::timeout(FINAL_FLUSH_GUARD, node.close()).await {
        Ok(closed) => closed,
        Err(_) => Err(peerdoc_node::NodeError::UncleanStop(format!(
            "the store did not finish its final flush within {} s",
            FINAL_FLUSH_GUARD.as_secs()
        ))),
    };
    if let Err(error) = std::fs::remove_file(&addr_file) {
        tracing::warn!(file = %addr_file.display(), %error, "could not remove the address file");
    }
    served.map_err(|e| DaemonError::Runtime(format!("the API server failed: {e}")))?;
    closed.map_err(DaemonError::Node)?;
    tracing::info!("stopped");
    Ok(())
}

/// The transport's gate for this mode: the team's key and members; a random key and
/// nobody for a device in no team (closed by default); nothing for `--open` and key files.
fn transport_gate(
    mode: TeamMode,
    file: Option<&TeamFile>,
    keypair: &peerdoc_net::Keypair,
    grace_ms: u64,
) -> Result<TransportGate, DaemonError> {
    let me = keypair.public().to_peer_id();
    Ok(match (mode, file) {
        (TeamMode::Open, _) => {
            tracing::warn!(
                "open mode (--open): this device syncs every document with any peerdoc on the \
                 network, strangers included; use a team instead (docs/teams.md)"
            );
            TransportGate::default()
        }
        (TeamMode::SharedKey, _) => {
            tracing::warn!(
                "shared team key file: every device holding the key is a full member, with no \
                 names, roles or revocation; move to a team (docs/teams.md, \"Moving from a key file\")"
            );
            TransportGate::default()
        }
        (TeamMode::Managed, Some(file)) => {
            let (current, also_accept) =
                crate::team::transport_keys(&file.team, crate::team::now_ms(), grace_ms);
            TransportGate {
                key: Some(current),
                also_accept,
                allowlist: Some(file.allowlist(&me)),
                peers: TeamService::known_peers(file),
            }
        }
        (TeamMode::Managed, None) => {
            // Nobody holds this key: no handshake completes until a team is created or
            // joined and the transport switches to the team's key.
            let mut key = [0u8; 32];
            rand::rngs::OsRng.try_fill_bytes(&mut key).map_err(|e| {
                DaemonError::Runtime(format!("no OS randomness for the transport key: {e}"))
            })?;
            TransportGate {
                key: Some(key),
                also_accept: Vec::new(),
                allowlist: Some(std::collections::BTreeSet::new()),
                peers: Vec::new(),
            }
        }
    })
}

/// An address clients can connect to: an unspecified bind address (0.0.0.0, ::) is
/// reached through loopback.
fn connectable(bound: SocketAddr) -> SocketAddr {
    if bound.ip().is_unspecified() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), bound.port())
    } else {
        bound
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
                    _ = term.recv() => tracing::info!("SIGTERM received"),
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot watch SIGTERM; only SIGINT stops the daemon");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Reads the token file, or creates it (mode 0600) with 32 random bytes as hex.
pub fn load_or_create_token(path: &Path) -> Result<String, DaemonError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let token = text.trim();
            if token.is_empty() || token.contains(char::is_whitespace) {
                return Err(DaemonError::BadToken {
                    path: path.to_owned(),
                });
            }
            Ok(token.to_owned())
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            rand::rngs::OsRng.try_fill_bytes(&mut bytes).map_err(|e| {
                DaemonError::Runtime(format!("no OS randomness for the token: {e}"))
            })?;
            let token = hex::encode(bytes);
            write_atomically(path, format!("{token}\n").as_bytes(), true)?;
            Ok(token)
        }
        Err(source) => Err(DaemonError::File {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Writes a secret file atomically with mode 0600 (see [`write_atomically`]).
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomically(path, bytes, true).map_err(|error| match error {
        DaemonError::File { source, .. } => source,
        other => std::io::Error::other(other.to_string()),
    })
}

/// Writes `bytes` to a temporary file beside `path` and renames it over `path`, so a
/// reader never sees half a file. `private` makes it readable by the owner only. The
/// temporary file has a name of its own (pid and a counter) and is created new, so a
/// stale one left by a crash, or one another writer is using, is never written into (its
/// mode would be kept).
fn write_atomically(path: &Path, bytes: &[u8], private: bool) -> Result<(), DaemonError> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let err = |source| DaemonError::File {
        path: path.to_owned(),
        source,
    };
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_file_name(format!(".{name}.{}-{n}.tmp", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let written = (|| {
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(err)
}
