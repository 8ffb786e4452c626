//! How a [`SledStorage`](crate::SledStorage) is opened: [`SledConfig`], what a write
//! survives ([`Durability`]) and sled's space mode.

use std::fmt;

use crate::crypt::StoreSecret;

/// What an acknowledged write survives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Durability {
    /// The process being killed: sled's flush has written the bytes to the kernel, which
    /// is what a crash of peerdoc (or of the app embedding it) needs. A power cut or a
    /// kernel crash can lose the last half second or so of acknowledged writes. The
    /// default on devices, where peers hold the same documents.
    #[default]
    Process,
    /// A power cut too: after sled's flush, `write` also `fsync`s sled's file (and its
    /// blob files when a large value was written) and the commit ledger, before it
    /// returns. Concurrent writers share these syncs (group commit).
    Power,
}

impl Durability {
    /// The name used in configuration and reports: `process` or `power`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Process => "process",
            Self::Power => "power",
        }
    }
}

impl std::str::FromStr for Durability {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "process" => Ok(Self::Process),
            "power" => Ok(Self::Power),
            other => Err(format!(
                "unknown durability {other:?}: use process or power"
            )),
        }
    }
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// sled's space/throughput trade-off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SpaceMode {
    /// Favour less disk space (sled's default).
    #[default]
    LowSpace,
    /// Favour write throughput.
    HighThroughput,
}

/// How to open a [`SledStorage`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SledConfig {
    /// sled's page cache size (default 64 MiB: tablets are small).
    pub cache_capacity_bytes: u64,
    /// sled's background flush interval. `write` flushes on its own, so this only
    /// bounds how long quarantine moves stay volatile (default 500 ms, sled's default).
    pub flush_every_ms: Option<u64>,
    /// Space or throughput.
    pub mode: SpaceMode,
    /// How long `open` keeps retrying while the directory's lock is taken (default
    /// 1000 ms). sled 0.34 releases its `flock` only when its background threads let go
    /// of the file, which can be shortly *after* the `Db` was dropped (sled issues #1234,
    /// #1289), so closing and reopening a store in one process needs this grace period.
    pub lock_wait_ms: u64,
    /// What an acknowledged write survives (default [`Durability::Process`]).
    pub durability: Durability,
    /// The secret of an encrypted store (default none: not encrypted). A store created
    /// with a secret seals every value with it, and opens only with it; see
    /// [`StoreSecret`] and `docs/security.md`, "Encryption at rest".
    pub secret: Option<StoreSecret>,
}

impl Default for SledConfig {
    fn default() -> Self {
        Self {
            cache_capacity_bytes: 64 * 1024 * 1024,
            flush_every_ms: Some(500),
            mode: SpaceMode::LowSpace,
            lock_wait_ms: 1000,
            durability: Durability::Process,
            secret: None,
        }
    }
}

impl SledConfig {
    /// Sets the page cache size.
    pub fn cache_capacity_bytes(mut self, bytes: u64) -> Self {
        self.cache_capacity_bytes = bytes;
        self
    }

    /// Sets the background flush interval (`None` turns it off).
    pub fn flush_every_ms(mut self, every: Option<u64>) -> Self {
        self.flush_every_ms = every;
        self
    }

    /// Sets how long `open` waits for a taken lock (0: fail at once).
    pub fn lock_wait_ms(mut self, wait: u64) -> Self {
        self.lock_wait_ms = wait;
        self
    }

    /// Sets what an acknowledged write survives.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Sets the secret: a new store is created encrypted with it, an existing one must
    /// have been created with it.
    pub fn secret(mut self, secret: Option<StoreSecret>) -> Self {
        self.secret = secret;
        self
    }

    /// Sets the space mode.
    pub fn mode(mut self, mode: SpaceMode) -> Self {
        self.mode = mode;
        self
    }
}
