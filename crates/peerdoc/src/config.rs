//! The daemon's configuration: defaults, TOML file, environment, flags.
//!
//! Every setting is a key of [`DaemonConfig`] (`api.listen`, `node.max_docs_in_memory`,
//! `net.enable_mdns`, ...). Layers, later ones winning:
//!
//! 1. the defaults ([`DaemonConfig::default`]);
//! 2. the TOML file (`--config`, else `<config dir>/peerdoc/config.toml` if it exists);
//! 3. environment variables `PEERDOC_<KEY>` with dots as underscores, upper case
//!    (`PEERDOC_NODE_MAX_DOCS_IN_MEMORY=500`), for every key;
//! 4. flags (`--api-listen`, `--listen`, `--peer`, `--no-mdns`, ..., and `--set key=value`
//!    for any key). clap's own environment variables (`PEERDOC_API_LISTEN`, ...) count as
//!    flags.
//!
//! Unknown keys are an error naming the key and where it came from. `docs/daemon.md`
//! lists every key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use peerdoc_node::{Multiaddr, NetConfig, NodeConfig};
use serde::{Deserialize, Serialize};

pub use self::origin::{Origin, Origins, ShownKey, show};
pub use self::secret::{
    EncryptionMode, PASSPHRASE_VAR, SecretSources, postgres_config, write_new_key,
};
pub use self::sections::{CloudConfig, DurabilityMode, StorageConfig};
pub use self::values::default_keys;
pub use self::values::peer_addr;
use self::values::{expand_home, flatten, normalize_addrs};
use crate::cli::args::{GlobalArgs, RunArgs};
use crate::cloud::{CloudEndpoint, TlsTrust};

/// Default address of the HTTP API.
pub const DEFAULT_API_LISTEN: &str = "127.0.0.1:7420";

/// Default request body limit of the HTTP API (64 MiB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Why the configuration could not be assembled. Each message names where the bad value
/// came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The config file is not valid TOML or holds an unknown key or a wrong type.
    #[error("config file {path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong (names the key).
        message: String,
    },
    /// A `--set` argument is malformed or names an unknown key.
    #[error("--set {arg}: {message}")]
    Set {
        /// The argument as given.
        arg: String,
        /// What is wrong.
        message: String,
    },
    /// An environment variable holds a bad value.
    #[error("environment variable {var}: {message}")]
    Env {
        /// The variable.
        var: String,
        /// What is wrong.
        message: String,
    },
    /// The team key file is unreadable or not 64 hex characters.
    #[error("team key file {path}: {message}")]
    TeamKey {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// `cloud.ca_file` is unreadable or holds no usable CA certificate.
    #[error("cloud.ca_file {path}: {message}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The store's secret is missing, unreadable, inside the data directory or readable
    /// by other users.
    #[error("{0}")]
    StoreSecret(String),
    /// A value is well-formed TOML but out of range or unparsable.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// No data directory was given and the platform has none.
    #[error("no data directory: pass --data-dir or set PEERDOC_DATA_DIR")]
    NoDataDir,
}

/// Everything `peerdoc run` can be configured with. See the [module docs](self).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DaemonConfig {
    /// Data directory (store, identity, API token and address).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// `device` (the default) or `cloud`: the cloud profile changes the defaults of a
    /// few keys for a server (see [`Profile`]); any key set explicitly still wins.
    pub profile: Profile,
    /// `tracing` filter, e.g. `info` or `peerdoc=debug`.
    pub log: String,
    /// Also write the log to this file, rotated at 10 MiB with 5 old files kept
    /// (`<file>.1` … `<file>.5`). [default: stderr only]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_file: Option<PathBuf>,
    /// File holding the team key (64 hex characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team_key_file: Option<PathBuf>,
    /// The HTTP API.
    pub api: ApiConfig,
    /// The engine and its queues.
    pub node: NodeConfig,
    /// The transport ([`NetConfig`]'s fields).
    pub net: NetConfig,
    /// Cloud endpoints (`docs/cloud.md`).
    pub cloud: CloudConfig,
    /// Teams (`docs/teams.md`).
    pub team: TeamConfig,
    /// The store (`docs/storage.md`).
    pub storage: StorageConfig,
}

/// `[team]`: whom this device syncs with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TeamConfig {
    /// Sync with any peerdoc on the network, with no team: for demos and tests only
    /// (anyone on the Wi-Fi receives every document). Off: only team members connect.
    pub open: bool,
    /// Address where this device accepts invite codes (TCP; port 0 picks one).
    pub enrol_listen: String,
    /// This device's name when it creates or joins a team [default: the host name].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_name: Option<String>,
    /// After the team key was rotated (a device was removed), how long the previous
    /// keys are still accepted for inbound connections, in seconds, so that members
    /// that were away can still reach the team and learn the new key. 0: never.
    pub previous_key_grace_secs: u64,
    /// This device is the team's meeting point on a network that keeps devices apart
    /// (a laptop on a cable, or serving its own hotspot): its address record says so,
    /// and members that reach only it are shown as syncing through it.
    pub hub: bool,
    /// When no member is reachable for 30 s (multicast blocked, every remembered
    /// address dead), try the team port on each address of this device's own subnet
    /// (at most its /24), one every 200 ms, at most every 5 minutes. Off by default:
    /// it knocks on every device of the network (`docs/networking.md`).
    pub probe_subnet: bool,
}

/// The default enrolment port: stable, so that an invite code stays valid when the
/// inviting device restarts.
pub const DEFAULT_ENROL_PORT: u16 = 7411;

impl Default for TeamConfig {
    fn default() -> Self {
        Self {
            open: false,
            enrol_listen: format!("0.0.0.0:{DEFAULT_ENROL_PORT}"),
            device_name: None,
            previous_key_grace_secs: 7 * 24 * 3600,
            hub: false,
            probe_subnet: false,
        }
    }
}

/// `[api]`: the local HTTP API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// Address to bind (port 0 picks one). Loopback unless you mean it.
    pub listen: String,
    /// Largest request body, in bytes; larger ones get `413 too_large`.
    pub max_body_bytes: usize,
    /// Web origins allowed to open the `/v1/sync` WebSocket (exact `Origin` values,
    /// e.g. `http://localhost:5173`). Requests without `Origin` are not from a page.
    pub allowed_origins: Vec<String>,
    /// HTTP connections served at once; beyond that, new ones wait until one closes.
    pub max_connections: usize,
    /// Seconds a client has to send a request's head; also the longest an idle
    /// kept-alive connection stays open.
    pub header_timeout_secs: u64,
    /// Seconds a request body may send nothing before the request fails.
    pub body_timeout_secs: u64,
}

impl ApiConfig {
    /// The HTTP server's limits from this section.
    pub fn limits(&self) -> crate::server::Limits {
        crate::server::Limits {
            max_connections: self.max_connections,
            header_timeout: std::time::Duration::from_secs(self.header_timeout_secs),
            body_idle_timeout: std::time::Duration::from_secs(self.body_timeout_secs),
        }
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_API_LISTEN.to_owned(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            allowed_origins: Vec::new(),
            max_connections: crate::server::Limits::default().max_connections,
            header_timeout_secs: crate::server::Limits::default().header_timeout.as_secs(),
            body_timeout_secs: crate::server::Limits::default().body_idle_timeout.as_secs(),
        }
    }
}

/// The libp2p port a device listens on by default (TCP, and UDP for QUIC), so the
/// address given to a teammate survives restarts. When it is taken (a second daemon on
/// one machine), the daemon falls back to a port the OS picks and remembers that one in
/// `<data_dir>/net.port` for the next start (`docs/daemon.md`).
pub const DEFAULT_LISTEN_PORT: u16 = 7410;

/// The daemon's default listen addresses on `port`: TCP and QUIC on every interface.
pub fn default_listen_addrs_on(port: u16) -> Vec<Multiaddr> {
    [
        format!("/ip4/0.0.0.0/tcp/{port}"),
        format!("/ip4/0.0.0.0/udp/{port}/quic-v1"),
    ]
    .iter()
    .filter_map(|a| a.parse().ok())
    .collect()
}

fn default_listen_addrs() -> Vec<Multiaddr> {
    default_listen_addrs_on(DEFAULT_LISTEN_PORT)
}

/// Sets of defaults for where the daemon runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// A venue device: mDNS on, libp2p on TCP and UDP port 7410 of every interface.
    Device,
    /// The team's cloud peer on a server: mDNS off, libp2p on TCP port 4001 of every
    /// interface, a larger memory budget; refuses to run open (--open), so that only
    /// the team can connect.
    Cloud,
}

/// The libp2p TCP port the cloud profile listens on unless `net.listen_addrs` is set.
pub const CLOUD_LISTEN_PORT: u16 = 4001;

impl Profile {
    /// The profile's defaults, as (key, value) pairs applied under every explicit layer.
    fn defaults(self) -> Vec<(&'static str, toml::Value)> {
        match self {
            Self::Device => Vec::new(),
            Self::Cloud => vec![
                ("net.enable_mdns", toml::Value::Boolean(false)),
                (
                    "net.listen_addrs",
                    string_array(&[format!("/ip4/0.0.0.0/tcp/{CLOUD_LISTEN_PORT}")]),
                ),
                ("node.max_docs_in_memory", toml::Value::Integer(10_000)),
                // Devices keep receipts of what the cloud confirms holding.
                ("node.cloud", toml::Value::Boolean(true)),
                // A server has no peer holding its documents if its disk loses them.
                ("storage.durability", toml::Value::String("power".into())),
            ],
        }
    }
}

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            data_dir: None,
            profile: Profile::Device,
            log: "info".to_owned(),
            log_file: None,
            team_key_file: None,
            api: ApiConfig::default(),
            node: NodeConfig::default(),
            net: NetConfig {
                listen_addrs: default_listen_addrs(),
                ..NetConfig::default()
            },
            cloud: CloudConfig::default(),
            team: TeamConfig::default(),
            storage: StorageConfig::default(),
        }
    }
}

/// A configuration with its sources resolved: ready to start a node.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The merged configuration.
    pub config: DaemonConfig,
    /// The data directory in effect.
    pub data_dir: PathBuf,
    /// The API address to bind.
    pub api_listen: SocketAddr,
    /// The config file that was read, if any.
    pub file: Option<PathBuf>,
    /// Where each leaf key's value came from (`peerdoc config show`).
    pub origins: Origins,
    /// `--store`: the PostgreSQL database holding the documents, if not the data
    /// directory. Kept out of `config show` (it may hold a password).
    pub store_url: Option<String>,
}

impl Resolved {
    /// How this daemon decides whom it syncs with (`docs/teams.md`).
    pub fn team_mode(&self) -> crate::team::TeamMode {
        if self.config.team.open {
            crate::team::TeamMode::Open
        } else if self.config.team_key_file.is_some() {
            crate::team::TeamMode::SharedKey
        } else {
            crate::team::TeamMode::Managed
        }
    }

    /// The node configuration these settings describe, with the transport gated as
    /// `gate` says (team key and allowlist from the team; a key file's key wins).
    pub fn node_config(&self, gate: TransportGate) -> Result<NodeConfig, ConfigError> {
        let c = &self.config;
        let mut node = c.node.clone();
        node.data_dir = self.data_dir.clone();
        node.durability = c.storage.durability.into();
        let mut net = c.net.clone();
        net.team_key = gate.key;
        net.also_accept_keys = gate.also_accept;
        if gate.allowlist.is_some() {
            net.allowlist = gate.allowlist;
        }
        net.peers.extend(gate.peers);
        if let Some(path) = &c.team_key_file {
            net.team_key = Some(read_team_key(path)?);
        }
        if net.team_key.is_some() && self.origins.is_default("net.listen_addrs") {
            // QUIC cannot carry the private-network handshake: drop it from the
            // defaults rather than make every keyed team spell out TCP.
            net.listen_addrs.retain(|a| !a.to_string().contains("quic"));
        }
        net.validate()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        node.net = net;
        // A stock sync server never asks for what it does not know: push it everything.
        node.announce_to_plain_peers = c
            .cloud
            .parsed()?
            .iter()
            .any(|e| matches!(e, CloudEndpoint::SyncServer(_)));
        Ok(node)
    }

    /// The certificates `wss://` endpoints accept: the Mozilla roots plus
    /// `cloud.ca_file`'s CAs (read now; call once per daemon).
    pub fn cloud_tls(&self) -> Result<TlsTrust, ConfigError> {
        match &self.config.cloud.ca_file {
            Some(path) => TlsTrust::with_ca_file(path).map_err(|message| ConfigError::CaFile {
                path: path.clone(),
                message,
            }),
            None => TlsTrust::webpki_roots().map_err(ConfigError::Invalid),
        }
    }
}

/// How the transport is gated: what the team (or its absence) asks of it.
#[derive(Debug, Clone, Default)]
pub struct TransportGate {
    /// The private-network key (the team's; a random one for a device in no team).
    pub key: Option<[u8; 32]>,
    /// Keys also accepted for inbound connections (previous team keys in their grace).
    pub also_accept: Vec<[u8; 32]>,
    /// The peers that may connect (the team's members; nobody for a device in no team).
    pub allowlist: Option<std::collections::BTreeSet<peerdoc_node::PeerId>>,
    /// Addresses to keep dialing besides `net.peers` (members remembered by the team).
    pub peers: Vec<peerdoc_node::Multiaddr>,
}

/// Reads a team key file: 64 hex characters (surrounding whitespace ignored).
pub fn read_team_key(path: &Path) -> Result<[u8; 32], ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::TeamKey {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let mut key = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut key).map_err(|_| ConfigError::TeamKey {
        path: path.to_owned(),
        message: "expected 64 hex characters".to_owned(),
    })?;
    Ok(key)
}

/// The per-platform default data directory (Linux: `~/.local/share/peerdoc`).
pub fn default_data_dir() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "peerdoc").map(|d| d.data_dir().to_owned())
}

/// The per-platform default config file (Linux: `~/.config/peerdoc/config.toml`).
pub fn default_config_file() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "peerdoc").map(|d| d.config_dir().join("config.toml"))
}

/// Keys without a default that the environment may still set, taken verbatim as text:
/// paths, and the sync budget (read with its unit, `"2mbit"`). (The other keys without
/// a default have a flag with its own variable, or are not meant for the environment.)
const ENV_TEXT_KEYS: &[&str] = &[
    "cloud.ca_file",
    "log_file",
    "net.max_rate",
    "storage.durability",
    "storage.encryption",
    "storage.key_file",
    "storage.passphrase_file",
    "storage.schema",
];

/// The environment variable for a key: `node.max_docs_in_memory` →
/// `PEERDOC_NODE_MAX_DOCS_IN_MEMORY`.
pub fn env_var_for(key: &str) -> String {
    format!("PEERDOC_{}", key.replace('.', "_").to_uppercase())
}

impl DaemonConfig {
    /// Assembles the configuration from the process's flags and environment.
    pub fn load(global: &GlobalArgs, run: &RunArgs) -> Result<Resolved, ConfigError> {
        Self::load_with(global, run, |var| std::env::var(var).ok())
    }

    /// [`DaemonConfig::load`] with the environment given as a lookup (for tests).
    pub fn load_with(
        global: &GlobalArgs,
        run: &RunArgs,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Resolved, ConfigError> {
        let mut origins = Origins::default();
        // Layer 2: the file.
        let file = match &run.config {
            Some(path) => Some(path.clone()),
            None => default_config_file().filter(|p| p.is_file()),
        };
        let mut merged = toml::Table::new();
        if let Some(path) = &file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
                path: path.clone(),
                source,
            })?;
            let table: toml::Table =
                text.parse()
                    .map_err(|e: toml::de::Error| ConfigError::File {
                        path: path.clone(),
                        message: e.message().to_owned(),
                    })?;
            check(&table).map_err(|message| ConfigError::File {
                path: path.clone(),
                message,
            })?;
            let mut keys = Vec::new();
            flatten("", &table, &mut keys);
            for (key, _) in keys {
                origins.set(key, Origin::File(path.clone()));
            }
            merged = table;
        }
        // Layer 3: the environment.
        let env_keys = default_keys()
            .into_iter()
            .map(|(key, default)| (key, Some(default)))
            .chain(ENV_TEXT_KEYS.iter().map(|key| ((*key).to_owned(), None)));
        for (key, default) in env_keys {
            let var = env_var_for(&key);
            if let Some(text) = env(&var) {
                let value = match &default {
                    Some(default) => parse_value(&text, default),
                    None => toml::Value::String(text),
                };
                let mut one = toml::Table::new();
                insert_dotted(&mut one, &key, value.clone()).map_err(|message| {
                    ConfigError::Env {
                        var: var.clone(),
                        message,
                    }
                })?;
                check(&one).map_err(|message| ConfigError::Env {
                    var: var.clone(),
                    message,
                })?;
                insert_dotted(&mut merged, &key, value).map_err(|message| ConfigError::Env {
                    var: var.clone(),
                    message,
                })?;
                origins.set(key, Origin::Env(var));
            }
        }
        // Layer 4: flags (and clap's own environment variables).
        let mut flags: Vec<(&str, &str, toml::Value)> = Vec::new();
        if let Some(dir) = &global.data_dir {
            flags.push(("data_dir", "--data-dir", path_value(dir)));
        }
        if let Some(listen) = &run.api_listen {
            flags.push((
                "api.listen",
                "--api-listen",
                toml::Value::String(listen.clone()),
            ));
        }
        if !run.listen.is_empty() {
            flags.push(("net.listen_addrs", "--listen", string_array(&run.listen)));
        }
        if !run.peers.is_empty() {
            flags.push(("net.peers", "--peer", string_array(&run.peers)));
        }
        if !run.cloud.is_empty() {
            flags.push(("cloud.endpoints", "--cloud", string_array(&run.cloud)));
        }
        if run.no_mdns {
            flags.push(("net.enable_mdns", "--no-mdns", toml::Value::Boolean(false)));
        }
        if let Some(profile) = run.profile {
            let name = match profile {
                Profile::Device => "device",
                Profile::Cloud => "cloud",
            };
            flags.push(("profile", "--profile", toml::Value::String(name.into())));
        }
        if let Some(path) = &run.team_key_file {
            flags.push(("team_key_file", "--team-key-file", path_value(path)));
        }
        if run.open {
            flags.push(("team.open", "--open", toml::Value::Boolean(true)));
        }
        if run.hub {
            flags.push(("team.hub", "--hub", toml::Value::Boolean(true)));
        }
        if let Some(log) = &run.log {
            flags.push(("log", "--log", toml::Value::String(log.clone())));
        }
        if let Some(file) = &run.log_file {
            flags.push(("log_file", "--log-file", path_value(file)));
        }
        for (key, flag, value) in flags {
            insert_dotted(&mut merged, key, value).map_err(ConfigError::Invalid)?;
            origins.set(key.to_owned(), Origin::Flag(flag));
        }
        let defaults: std::collections::BTreeMap<String, toml::Value> =
            default_keys().into_iter().collect();
        for arg in &run.set {
            let set_err = |message: String| ConfigError::Set {
                arg: arg.clone(),
                message,
            };
            let Some((key, text)) = arg.split_once('=') else {
                return Err(set_err("expected KEY=VALUE".into()));
            };
            let key = key.trim();
            let fallback = defaults
                .get(key)
                .cloned()
                .unwrap_or(toml::Value::String(String::new()));
            let value = parse_value(text.trim(), &fallback);
            let mut one = toml::Table::new();
            insert_dotted(&mut one, key, value.clone()).map_err(set_err)?;
            check(&one).map_err(set_err)?;
            insert_dotted(&mut merged, key, value).map_err(set_err)?;
            origins.set(key.to_owned(), Origin::Set);
        }
        // The profile's defaults go under everything set explicitly.
        let profile = match merged.get("profile") {
            Some(value) => value.clone().try_into::<Profile>().map_err(|_| {
                ConfigError::Invalid(format!("profile {value} is not `device` or `cloud`"))
            })?,
            None => Profile::Device,
        };
        for (key, value) in profile.defaults() {
            if !has_dotted(&merged, key) {
                insert_dotted(&mut merged, key, value).map_err(ConfigError::Invalid)?;
                origins.set(key.to_owned(), Origin::Profile(profile));
            }
        }
        // Then the defaults of every key still unset. Key by key: a section set only in
        // part (`--no-mdns` sets `net.enable_mdns`) keeps the daemon's defaults for the
        // rest of it (the listen addresses), not the library's.
        for (key, value) in defaults {
            if !has_dotted(&merged, &key) {
                insert_dotted(&mut merged, &key, value).map_err(ConfigError::Invalid)?;
                origins.set(key, Origin::Default);
            }
        }
        normalize_addrs(&mut merged).map_err(|message| {
            // Flags are not checked layer by layer: name the flag here.
            let origin = match message.split(':').next() {
                Some(key) => origins.of(key).to_string(),
                None => String::new(),
            };
            ConfigError::Invalid(format!("{message} (from {origin})"))
        })?;
        let config: DaemonConfig = toml::Value::Table(merged)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.message().to_owned()))?;
        let mut config = config;
        for path in [
            config.data_dir.as_mut(),
            config.log_file.as_mut(),
            config.team_key_file.as_mut(),
            config.cloud.ca_file.as_mut(),
            config.storage.key_file.as_mut(),
            config.storage.passphrase_file.as_mut(),
        ]
        .into_iter()
        .flatten()
        {
            *path = expand_home(path, env("HOME").as_deref());
        }
        let data_dir = match &config.data_dir {
            Some(dir) => dir.clone(),
            None => default_data_dir().ok_or(ConfigError::NoDataDir)?,
        };
        let api_listen: SocketAddr = config.api.listen.parse().map_err(|_| {
            ConfigError::Invalid(format!(
                "api.listen {:?} is not an address like 127.0.0.1:7420",
                config.api.listen
            ))
        })?;
        if config.api.max_body_bytes == 0 {
            return Err(ConfigError::Invalid(
                "api.max_body_bytes must be positive".into(),
            ));
        }
        for (key, value) in [
            ("api.max_connections", config.api.max_connections as u64),
            ("api.header_timeout_secs", config.api.header_timeout_secs),
            ("api.body_timeout_secs", config.api.body_timeout_secs),
        ] {
            if value == 0 {
                return Err(ConfigError::Invalid(format!("{key} must be positive")));
            }
        }
        if config.profile == Profile::Cloud && config.team.open {
            return Err(ConfigError::Invalid(
                "the cloud profile serves the team on a public address and cannot run open \
                 (--open): strangers could connect; join it to the team with an invite code \
                 instead (docs/teams.md)"
                    .into(),
            ));
        }
        if config.team.open && config.team_key_file.is_some() {
            return Err(ConfigError::Invalid(
                "--open and --team-key-file contradict each other: choose one".into(),
            ));
        }
        config
            .team
            .enrol_listen
            .parse::<SocketAddr>()
            .map_err(|_| {
                ConfigError::Invalid(format!(
                    "team.enrol_listen {:?} is not an address like 0.0.0.0:7411",
                    config.team.enrol_listen
                ))
            })?;
        config.cloud.parsed()?;
        config
            .cloud
            .retry
            .validate()
            .map_err(|e| ConfigError::Invalid(format!("cloud.retry: {e}")))?;
        if let Err(error) = tracing_subscriber::EnvFilter::try_new(&config.log) {
            return Err(ConfigError::Invalid(format!(
                "log filter {:?}: {error}",
                config.log
            )));
        }
        Ok(Resolved {
            config,
            data_dir,
            api_listen,
            file,
            origins,
            store_url: run.store.clone(),
        })
    }
}

/// Deserialises a partial table to find unknown keys and wrong types early, so the
/// error can name the layer they came from.
fn check(table: &toml::Table) -> Result<(), String> {
    let mut table = table.clone();
    normalize_addrs(&mut table)?;
    toml::Value::Table(table)
        .try_into::<DaemonConfig>()
        .map(|_| ())
        .map_err(|e| e.message().to_owned())
}

/// A value from text: TOML when it parses as a TOML value, a comma-separated list when
/// the key's default is a list, else the text as a string.
fn parse_value(text: &str, default: &toml::Value) -> toml::Value {
    if let Ok(mut table) = format!("v = {text}").parse::<toml::Table>()
        && let Some(value) = table.remove("v")
    {
        return value;
    }
    if matches!(default, toml::Value::Array(_)) {
        let items: Vec<String> = text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        return string_array(&items);
    }
    toml::Value::String(text.to_owned())
}

fn string_array(items: &[String]) -> toml::Value {
    toml::Value::Array(items.iter().cloned().map(toml::Value::String).collect())
}

fn path_value(path: &Path) -> toml::Value {
    toml::Value::String(path.to_string_lossy().into_owned())
}

/// Sets `a.b.c = value` in `table`, creating the tables on the way.
/// Whether `key` (dotted) is set in `table`.
fn has_dotted(table: &toml::Table, key: &str) -> bool {
    let mut current = table;
    let mut parts = key.split('.').peekable();
    while let Some(part) = parts.next() {
        match current.get(part) {
            None => return false,
            Some(_) if parts.peek().is_none() => return true,
            Some(toml::Value::Table(inner)) => current = inner,
            Some(_) => return false,
        }
    }
    false
}

fn insert_dotted(table: &mut toml::Table, key: &str, value: toml::Value) -> Result<(), String> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!("bad key {key:?}"));
    }
    let (last, path) = parts
        .split_last()
        .ok_or_else(|| format!("bad key {key:?}"))?;
    let mut current = table;
    for part in path {
        let entry = current
            .entry((*part).to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = match entry {
            toml::Value::Table(inner) => inner,
            _ => return Err(format!("{part:?} is not a section")),
        };
    }
    current.insert((*last).to_owned(), value);
    Ok(())
}

mod origin;
mod secret;
mod sections;
#[cfg(test)]
mod tests;
mod values;
