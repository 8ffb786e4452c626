//! Sections of the daemon configuration small enough to stand alone: `[cloud]` and
//! `[storage]` (`docs/daemon.md`, "Configuration"). The rest live in `config.rs`.

use std::path::PathBuf;

use peerdoc_core::endpoint::EndpointPolicy;
use serde::{Deserialize, Serialize};

use super::ConfigError;
use super::secret::EncryptionMode;
use crate::cloud::CloudEndpoint;

/// `[cloud]`: endpoints the daemon keeps connected whenever a path exists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct CloudConfig {
    /// `ws://` URLs of automerge-repo sync servers and libp2p multiaddrs.
    pub endpoints: Vec<String>,
    /// Retry schedule: backoff with jitter and the circuit breaker.
    pub retry: EndpointPolicy,
    /// PEM file of CA certificates `wss://` endpoints are trusted with, in addition to
    /// the Mozilla roots (for a sync server behind a private CA).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

impl CloudConfig {
    /// The endpoints, parsed.
    pub fn parsed(&self) -> Result<Vec<CloudEndpoint>, ConfigError> {
        self.endpoints
            .iter()
            .map(|text| text.parse().map_err(ConfigError::Invalid))
            .collect()
    }
}

/// `[storage]`: what the store promises.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// What an acknowledged write survives: `process` (a crash of the daemon; the
    /// device default) or `power` (a power cut too: an `fsync` before every
    /// acknowledgement; the cloud profile's default).
    pub durability: DurabilityMode,
    /// Encryption at rest: `off` (the default), `passphrase` or `key_file`. Chosen when
    /// the store is created; `peerdoc store encrypt` turns it on for an existing one.
    pub encryption: EncryptionMode,
    /// With `encryption = "key_file"`: the file holding the 256-bit key (64 hex digits,
    /// mode 0600, outside the data directory; `peerdoc store new-key` makes one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// With `encryption = "passphrase"`: a file (mode 0600, outside the data directory)
    /// whose first line is the passphrase, when it comes neither from
    /// `PEERDOC_STORAGE_PASSPHRASE` nor from a terminal.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passphrase_file: Option<PathBuf>,
    /// With `--store`: the PostgreSQL schema holding the tables (default `peerdoc`).
    /// One per team when several teams' cloud daemons share a database.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// With `--store`: connections each daemon keeps to the database (default 4), besides
    /// the one that listens for other cloud nodes' changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool_size: Option<usize>,
}

/// The values of `storage.durability`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DurabilityMode {
    /// Survives the daemon being killed.
    #[default]
    Process,
    /// Survives a power cut too.
    Power,
}

impl From<DurabilityMode> for peerdoc_node::Durability {
    fn from(mode: DurabilityMode) -> Self {
        match mode {
            DurabilityMode::Process => Self::Process,
            DurabilityMode::Power => Self::Power,
        }
    }
}
