//! Tunables of the [`Repo`](super::Repo) engine, with defaults for a venue device.

use crate::ids::PeerId;
use crate::reconcile::ReconcileConfig;
use crate::wire::DEFAULT_MAX_MESSAGE_SIZE;

/// Limits and tunables. Every queue the engine keeps is bounded by one of these.
#[derive(Debug, Clone)]
pub struct RepoConfig {
    /// Our automerge-repo peer id (`senderId`).
    pub peer_id: PeerId,
    /// Largest frame accepted from a peer; larger ones disconnect it.
    pub max_message_size: usize,
    /// Documents kept in memory before idle ones are evicted, down to 90 % of this
    /// (they reload on demand).
    pub max_docs_in_memory: usize,
    /// Stored bytes of the documents kept in memory before idle ones are evicted.
    pub max_bytes_in_memory: u64,
    /// Messages from one peer that may wait for documents to load; more disconnects it.
    pub max_pending_per_peer: usize,
    /// Documents synced concurrently with one peer after reconciliation.
    pub max_concurrent_syncs_per_peer: usize,
    /// Commands that may wait for documents to load before new ones are refused.
    pub max_pending_commands: usize,
    /// Incremental chunks of a document before it is compacted into a snapshot.
    pub compaction_threshold: usize,
    /// How often dirty sync states are persisted and memory is trimmed.
    pub tick_interval_ms: u64,
    /// How long `Command::Find` waits for peers to produce a document, in ms.
    pub find_timeout_ms: u64,
    /// Whether plain automerge-repo peers are sent documents they did not ask for.
    pub announce_to_plain_peers: bool,
    /// Offer ourselves to peers as the team's cloud: peers keep receipts of what we
    /// confirm (our sync messages reveal only heads we stored durably).
    pub cloud: bool,
    /// As a cloud: what our stored writes survive, declared to peers so that their
    /// receipts say it. `None`: not declared.
    pub cloud_durability: Option<crate::persist::CloudDurability>,
    /// Reconciliation tunables.
    pub reconcile: ReconcileConfig,
    /// The first 8 bytes of every automerge actor id this device writes with, so that
    /// a change can be traced to the device that made it (`device_actor_prefix`). The
    /// other 8 bytes are drawn fresh per document load: a change lost in a crash was
    /// never sent (messages wait for durability), but a new actor per load keeps
    /// `(actor, seq)` unique even if that ever changed. `None`: all 16 are random.
    pub actor_prefix: Option<[u8; 8]>,
    /// The peerdoc extension version offered in the handshake
    /// (`wire::PEERDOC_EXTENSION_VERSION`, the newest this build speaks, unless a test
    /// plays an older peer).
    pub extension_version: u64,
}

impl RepoConfig {
    /// Defaults for a device whose peer id is `peer_id`.
    pub fn new(peer_id: PeerId) -> Self {
        Self {
            peer_id,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_docs_in_memory: 1_000,
            max_bytes_in_memory: 256 * 1024 * 1024,
            max_pending_per_peer: 1_024,
            max_concurrent_syncs_per_peer: 32,
            max_pending_commands: 10_000,
            compaction_threshold: 64,
            tick_interval_ms: 1_000,
            find_timeout_ms: 10_000,
            announce_to_plain_peers: false,
            cloud: false,
            cloud_durability: None,
            reconcile: ReconcileConfig::default(),
            actor_prefix: None,
            extension_version: crate::wire::PEERDOC_EXTENSION_VERSION,
        }
    }
}
