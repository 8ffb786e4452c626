//! [`NodeConfig`]: where a node keeps its data, how it networks, and its limits.

use std::path::PathBuf;

use peerdoc_core::PeerId;
use peerdoc_core::repo::RepoConfig;
use peerdoc_net::NetConfig;
use peerdoc_store::{Durability, StoreSecret};
use serde::{Deserialize, Serialize};

/// How to start a [`Node`](crate::Node).
///
/// Every queue between the node's parts is bounded by one of these fields.
///
/// The limits (de)serialise as a flat table, which is how the daemon's `[node]` config
/// section is read; `data_dir`, `net` and the two announcement switches are set by the
/// embedder (or the daemon's other sections) and are not part of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct NodeConfig {
    /// Directory holding the store (`store/`) and the device identity (`identity.key`).
    /// Created when missing. Only one node may use it at a time.
    #[serde(skip)]
    pub data_dir: PathBuf,
    /// The transport. [`NetConfig::default`] runs mDNS on every interface, as a venue
    /// device should; tests and examples use [`NetConfig::loopback`].
    #[serde(skip)]
    pub net: NetConfig,
    /// Documents kept in memory before idle ones are evicted, down to 90 % of this
    /// (they reload on demand).
    pub max_docs_in_memory: usize,
    /// Stored bytes of in-memory documents before idle ones are evicted.
    pub max_bytes_in_memory: u64,
    /// Documents synced concurrently with one peer after reconciliation.
    pub max_concurrent_syncs_per_peer: usize,
    /// Incremental chunks of a document before it is compacted into a snapshot.
    pub compaction_threshold: usize,
    /// How often dirty sync states are persisted and memory is trimmed, in ms.
    pub tick_interval_ms: u64,
    /// Commands from handles that may wait for the driver before callers wait too.
    pub command_queue_len: usize,
    /// Commands accepted by the driver and not yet answered; beyond this it stops
    /// taking new ones until some are answered.
    pub max_pending_commands: usize,
    /// Storage operations queued for the storage thread; beyond this the driver stops
    /// taking commands and network events until the thread catches up.
    pub storage_queue_len: usize,
    /// Writes are refused (`storage full`) while the store's disk has less than this
    /// many bytes free, so the store never runs out of space itself (sled 0.34 does not
    /// recover from that without a restart, and can hang). 0 turns the check off.
    pub min_free_bytes: u64,
    /// Events kept for each [`NodeHandle::subscribe`](crate::NodeHandle::subscribe)
    /// receiver; a receiver that lags further loses the oldest.
    pub event_queue_len: usize,
    /// Frames kept for one peer while the transport's queue to it is full; beyond this
    /// the peer is detached (see `docs/embedding.md`).
    pub peer_backlog_len: usize,
    /// Publish a gossip announcement (document id + heads) after every local change,
    /// so that peers sync it at once. Off, changes still reach every peer over the sync
    /// streams; tests turn it off to show that.
    #[serde(skip)]
    pub announce_changes: bool,
    /// Frames queued each way on one attached connection
    /// ([`NodeHandle::attach`](crate::NodeHandle::attach)); a consumer that lets more
    /// pile up is detached.
    pub attached_queue_len: usize,
    /// Whether plain automerge-repo peers (not peerdoc) are pushed every document,
    /// highest priority first, without asking. A stock automerge-repo sync server
    /// never asks for documents it does not know, so a node using one as its cloud
    /// needs this.
    #[serde(skip)]
    pub announce_to_plain_peers: bool,
    /// How long [`NodeHandle::find`](crate::NodeHandle::find) waits for peers to
    /// produce a document it does not have, in ms.
    pub find_timeout_ms: u64,
    /// Offer this node to peers as its team's cloud: peers keep receipts of what it
    /// confirms holding (it reveals only heads it stored durably). The daemon's cloud
    /// profile sets it.
    pub cloud: bool,
    /// The first 8 bytes of every automerge actor id this node writes with, so that
    /// history can name the device behind a change (the daemon derives it from the
    /// device's peer id). `None`: random actors.
    #[serde(skip)]
    pub actor_prefix: Option<[u8; 8]>,
    /// sled's page cache, in bytes.
    pub store_cache_bytes: u64,
    /// What an acknowledged write survives: a process crash (the default on devices) or
    /// a power cut too (`fsync` before every acknowledgement, shared by concurrent
    /// writers). See `docs/storage.md`.
    #[serde(skip)]
    pub durability: Durability,
    /// The secret of an encrypted store (`None`: not encrypted). A new store is created
    /// encrypted with it; an existing one opens only with the secret it was created
    /// with. See `docs/security.md`, "Encryption at rest".
    #[serde(skip)]
    pub store_secret: Option<StoreSecret>,
    /// Keep the documents in this PostgreSQL database instead of the sled store under
    /// `data_dir` (the cloud tier, `docs/cloud.md`). The identity stays in `data_dir`.
    #[serde(skip)]
    pub postgres: Option<PostgresStore>,
    /// How long `start` waits for a store another process is still closing before it
    /// reports [`NodeError::DataDirLocked`](crate::NodeError::DataDirLocked), in ms.
    pub store_lock_wait_ms: u64,
}

/// [`NodeConfig::new`] with an empty `data_dir`, which must be set before starting a
/// node (this is what deserialising a `[node]` table starts from).
impl Default for NodeConfig {
    fn default() -> Self {
        Self::new(PathBuf::new())
    }
}

impl NodeConfig {
    /// Defaults for a venue device keeping its data in `data_dir`, with the default
    /// (mDNS on) network configuration.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            net: NetConfig::default(),
            max_docs_in_memory: 1_000,
            max_bytes_in_memory: 256 * 1024 * 1024,
            max_concurrent_syncs_per_peer: 32,
            compaction_threshold: 64,
            tick_interval_ms: 1_000,
            command_queue_len: 256,
            max_pending_commands: 4_096,
            storage_queue_len: 1_024,
            min_free_bytes: 16 * 1024 * 1024,
            event_queue_len: 1_024,
            peer_backlog_len: 4_096,
            announce_changes: true,
            attached_queue_len: 1_024,
            announce_to_plain_peers: false,
            find_timeout_ms: 10_000,
            cloud: false,
            actor_prefix: None,
            store_cache_bytes: 64 * 1024 * 1024,
            store_lock_wait_ms: 1_000,
            durability: Durability::Process,
            store_secret: None,
            postgres: None,
        }
    }

    /// Like [`NodeConfig::new`] but networking on 127.0.0.1 only with mDNS off: for
    /// tests, examples and several nodes in one process.
    pub fn loopback(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            net: NetConfig::loopback(),
            ..Self::new(data_dir)
        }
    }

    /// The engine configuration for a node whose automerge-repo peer id is `peer_id`.
    pub(crate) fn repo_config(&self, peer_id: PeerId) -> RepoConfig {
        let mut repo = RepoConfig::new(peer_id);
        repo.max_docs_in_memory = self.max_docs_in_memory;
        repo.max_bytes_in_memory = self.max_bytes_in_memory;
        repo.max_concurrent_syncs_per_peer = self.max_concurrent_syncs_per_peer;
        repo.compaction_threshold = self.compaction_threshold;
        repo.tick_interval_ms = self.tick_interval_ms;
        repo.max_pending_commands = self.max_pending_commands;
        repo.announce_to_plain_peers = self.announce_to_plain_peers;
        repo.cloud = self.cloud;
        // On PostgreSQL every write returns after COMMIT, and every session sets
        // synchronous_commit = on: the commit's WAL record is flushed (the server's
        // power-loss barrier), whatever `durability` says about sled.
        repo.cloud_durability = Some(match self.durability {
            _ if self.postgres.is_some() => peerdoc_core::persist::CloudDurability::Power,
            Durability::Process => peerdoc_core::persist::CloudDurability::Process,
            Durability::Power => peerdoc_core::persist::CloudDurability::Power,
        });
        repo.find_timeout_ms = self.find_timeout_ms;
        repo.actor_prefix = self.actor_prefix;
        repo
    }

    /// Rejects zero-sized queues (a zero bound would deadlock or panic in tokio).
    pub(crate) fn validate(&self) -> Result<(), String> {
        let positive = [
            ("command_queue_len", self.command_queue_len),
            ("max_pending_commands", self.max_pending_commands),
            ("storage_queue_len", self.storage_queue_len),
            ("event_queue_len", self.event_queue_len),
            ("peer_backlog_len", self.peer_backlog_len),
            ("attached_queue_len", self.attached_queue_len),
            ("max_docs_in_memory", self.max_docs_in_memory),
            (
                "max_concurrent_syncs_per_peer",
                self.max_concurrent_syncs_per_peer,
            ),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(format!("{name} must be positive"));
            }
        }
        if self.find_timeout_ms == 0 {
            return Err("find_timeout_ms must be positive".into());
        }
        if self.tick_interval_ms == 0 {
            return Err("tick_interval_ms must be positive".into());
        }
        Ok(())
    }
}

/// Where a node on PostgreSQL keeps its documents ([`NodeConfig::postgres`]). Its
/// `Debug` shows the host, database and schema, never the password.
#[derive(Clone)]
pub struct PostgresStore(pub peerdoc_store_postgres::PgConfig);

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PostgresStore({})", self.0.target())
    }
}

impl PartialEq for PostgresStore {
    fn eq(&self, other: &Self) -> bool {
        self.0.target() == other.0.target()
    }
}

impl Eq for PostgresStore {}
