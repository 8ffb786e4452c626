//! The repo engine: a sans-IO state machine that owns documents, talks to peers in the
//! automerge-repo protocol (plus peerdoc's reconciliation extension) and asks its driver
//! for storage operations.
//!
//! Feed it [`Input`]s with the current time and an rng; perform the [`Output`]s it returns.
//! It reads no clock, draws no OS randomness and does no IO, so a simulator can replay
//! any schedule from a seed.
//!
//! This file is longer than the ~800-line rule: about 70 of its lines are the runnable
//! example below, and the rest (the engine's state, the input dispatch, startup, loading
//! and eviction) all work on the same fields. Each other job has its own file in
//! `repo/`: peers, tombstones, commands, changes, access, receipts, find, fetch and pull (each document from one peer), wanted (late delivery),
//! ephemeral (relay), remote heads (subscriptions), introduced (documents a peer
//! introduces), retry (writes that failed), reconciling, shared store (what another
//! cloud node on the same database wrote).
//!
//! ```
//! use peerdoc_core::repo::{Command, CommandId, Input, Output, Reply, Repo, RepoConfig, StorageOp, StorageResult};
//! use peerdoc_core::{MemoryStorage, PeerId, Storage};
//! use rand::SeedableRng;
//!
//! // A tiny driver: run storage ops inline and feed completions back.
//! fn drive(repo: &mut Repo, store: &MemoryStorage, rng: &mut rand_chacha::ChaCha8Rng, input: Input) -> Vec<Output> {
//!     let mut inputs = vec![input];
//!     let mut done = Vec::new();
//!     while let Some(input) = inputs.pop() {
//!         for out in repo.handle(1_700_000_000_000, rng, input) {
//!             match out {
//!                 Output::Storage { id, op } => {
//!                     let result = match op {
//!                         StorageOp::LoadRange { prefix } => store.range(&prefix).map(StorageResult::Range),
//!                         StorageOp::Load { key } => store.get(&key).map(StorageResult::Value),
//!                         StorageOp::Write(batch) => store.write(batch).map(|_| StorageResult::Written),
//!                     };
//!                     inputs.push(Input::StorageCompleted { id, result });
//!                 }
//!                 other => done.push(other),
//!             }
//!         }
//!     }
//!     done
//! }
//!
//! let store = MemoryStorage::new();
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
//! let mut repo = Repo::new(RepoConfig::new(PeerId::new("laptop")));
//! drive(&mut repo, &store, &mut rng, Input::Start);
//!
//! let initial = serde_json::json!({"title": "Barn wedding", "firstDance": "21:00"});
//! let outs = drive(&mut repo, &store, &mut rng, Input::Command {
//!     id: CommandId(1),
//!     command: Command::Create { initial: Some(initial), priority: 10, title: None },
//! });
//! let doc = outs.iter().find_map(|o| match o {
//!     Output::Reply { result: Ok(Reply::Created { doc, .. }), .. } => Some(*doc),
//!     _ => None,
//! }).unwrap();
//!
//! let outs = drive(&mut repo, &store, &mut rng, Input::Command {
//!     id: CommandId(2),
//!     command: Command::Read { doc, heads: None },
//! });
//! let json = outs.iter().find_map(|o| match o {
//!     Output::Reply { result: Ok(Reply::Json { value, .. }), .. } => Some(value.clone()),
//!     _ => None,
//! }).unwrap();
//! assert_eq!(json["firstDance"], "21:00");
//! ```

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use automerge::{Automerge, ChangeHash, ReadDoc};
use rand::RngCore;

use crate::ids::{ConnectionId, DocumentId, StorageId};
use crate::persist::{self, ConflictRecord, DocumentMeta};
use crate::reconcile::ItemSet;
use crate::storage::{StorageError, StorageKey, WriteBatch, WriteOp};

mod access;
mod announce;
mod changes;
mod commands;
mod config;
mod connection;
mod document;
mod ephemeral;
mod fetch;
mod find;
mod introduced;
mod io;
mod peers;
mod pull;
mod receipts;
mod reconciling;
mod remote_heads;
mod retry;
mod shared_store;
mod tombstones;
mod wanted;

pub use commands::Prepared;
pub use config::RepoConfig;
pub use ephemeral::{
    EPHEMERAL_BURST, EPHEMERAL_RATE_PER_SECOND, MAX_DAEMON_HOPS, MAX_EPHEMERAL_DATA_BYTES,
    MAX_EPHEMERAL_SESSION_ID_BYTES, MAX_EPHEMERAL_SOURCES,
};
pub use fetch::FETCH_PATIENCE_MS;
pub use introduced::MAX_INTRODUCED_PER_CONNECTION;
pub use io::{
    ChangeFn, ChangeOrigin, ChangeRequest, Command, CommandId, Event, Input, Output, PeerAccess,
    Reply, RepoError, StorageOp, StorageOpId, StorageResult,
};
pub use pull::{MAX_OFFER_DOCUMENTS, MAX_PULLS};
pub use remote_heads::MAX_REMOTE_SUBSCRIPTIONS;
pub use wanted::{MAX_KEPT_REQUEST_BYTES, MAX_WANTED_PER_CONNECTION};

use connection::Connection;

/// Failed writes kept for a retry; beyond, the oldest is dropped (and logged).
const MAX_FAILED_WRITES: usize = 4_096;
use document::LoadedDoc;

/// Counters for status pages and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepoStats {
    /// Documents known (tombstones included).
    pub documents: usize,
    /// Documents held in memory.
    pub loaded: usize,
    /// Storage operations not yet completed.
    pub storage_in_flight: usize,
    /// Connections (handshaking or ready).
    pub connections: usize,
    /// Documents evicted from memory so far.
    pub evictions: u64,
    /// Sync sessions kept for documents evicted from memory.
    pub parked_sessions: usize,
}

/// What one connection looks like from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    /// The driver's id.
    pub conn: ConnectionId,
    /// The peer's id, once the handshake finished.
    pub peer: Option<crate::ids::PeerId>,
    /// The peer's storage id.
    pub storage_id: Option<StorageId>,
    /// Whether the peer speaks peerdoc's extensions.
    pub peerdoc: bool,
    /// Frames received.
    pub messages_in: u64,
    /// Frames sent.
    pub messages_out: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// Bytes sent.
    pub bytes_out: u64,
    /// Documents waiting to be synced with this peer.
    pub queued_syncs: usize,
    /// Documents being synced with this peer now (from the queue).
    pub active_syncs: usize,
}

/// What the engine knows about one connected peer's copy of one document, from
/// [`Repo::peer_doc_sync`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerDocSync {
    /// The connection.
    pub conn: ConnectionId,
    /// The heads the peer last reported for the document, while a sync session with it
    /// exists (in memory, or parked for an evicted document).
    pub their_heads: Option<Vec<ChangeHash>>,
    /// The session saw both sides report the same heads (cleared when ours move).
    pub in_sync: bool,
    /// The document is queued or being synced with this peer.
    pub pending: bool,
    /// Reconciliation with this peer has finished: a document with no session that is
    /// not pending was found equal on both sides.
    pub reconciled: bool,
}

/// Work waiting for a document to load.
#[derive(Debug)]
enum Waiter {
    Command(CommandId, Command),
    PeerSync {
        conn: ConnectionId,
        data: Vec<u8>,
    },
    PeerDeleted(ConnectionId),
    QueuedSync(ConnectionId),
    /// Push the loaded document to connected peers (another node changed it).
    Push,
    /// Read the document back again once loaded (another node changed it meanwhile).
    Refresh,
}

#[derive(Debug, Default)]
struct Loading {
    chunks: Option<Vec<(StorageKey, Vec<u8>)>>,
    conflicts: Option<Vec<(StorageKey, Vec<u8>)>>,
    waiters: Vec<Waiter>,
}

#[derive(Debug)]
enum Purpose {
    StartCatalog,
    StartStorageId,
    LoadChunks(DocumentId),
    LoadConflicts(DocumentId),
    /// Reading what is left under a deleted document's prefix (`repo/tombstones.rs`).
    SweepDeleted(DocumentId),
    /// Reading back what another writer of a shared store changed (`repo/shared_store.rs`).
    Refresh(DocumentId, shared_store::RefreshPart),
    /// Reading every catalog record back after missed notices.
    RefreshCatalog,
    Write {
        doc: Option<DocumentId>,
        heads: Option<Vec<ChangeHash>>,
        replies: Vec<(CommandId, Reply)>,
        /// A copy of a write not tied to a document's heads (metadata, tombstones, sync
        /// states, the storage id), written again at the next tick if this one fails.
        /// A document's save is re-derived from its heads instead.
        retry: Option<WriteBatch>,
        /// Chunk keys a compaction in this write deletes: known again if it fails.
        replaced: Vec<StorageKey>,
    },
}

#[derive(Debug)]
enum Phase {
    Starting {
        catalog: Option<Vec<(StorageKey, Vec<u8>)>>,
        storage_id: Option<Option<Vec<u8>>>,
        queued: VecDeque<Input>,
    },
    Ready,
    Failed,
}

/// The engine. See the [module docs](self).
#[derive(Debug)]
pub struct Repo {
    config: RepoConfig,
    phase: Phase,
    storage_id: Option<StorageId>,
    catalog: BTreeMap<DocumentId, DocumentMeta>,
    items: ItemSet,
    docs: BTreeMap<DocumentId, LoadedDoc>,
    loading: BTreeMap<DocumentId, Loading>,
    storage_ops: BTreeMap<StorageOpId, Purpose>,
    conns: BTreeMap<ConnectionId, Connection>,
    /// Sync sessions of evicted documents (compacted once settled, see
    /// `Session::parked`). Dropping them would restart the exchange on every reload,
    /// which under memory pressure never ends. They go when their connection does:
    /// at most one per (document, connected peer).
    parked: BTreeMap<(DocumentId, ConnectionId), document::Session>,
    /// Documents whose changes are taken from every connection, read-only ones too, and
    /// that cannot be deleted (a team's membership document: see `Input::ProtectDocument`).
    protected: BTreeSet<DocumentId>,
    /// Documents asked for from peers (`Command::Find`).
    finding: BTreeMap<DocumentId, find::Finding>,
    /// Documents we lack, each being sent by one peer (`repo/fetch.rs`; at most one
    /// per loaded document).
    fetching: BTreeMap<DocumentId, fetch::Fetch>,
    /// Documents we lack that peers offered, each queued at or asked from one of them
    /// (`repo/pull.rs`; bounded by `MAX_PULLS`).
    pulls: BTreeMap<DocumentId, pull::Pull>,
    /// Writes that failed and are written again at the next tick (`retry_failed_writes`).
    failed_writes: Vec<WriteBatch>,
    /// Deleted documents whose stored data is looked for, and deleted, at the next tick.
    sweeps: BTreeSet<DocumentId>,
    /// Documents another writer of a shared store changed, being read back (one read
    /// per document at a time).
    refreshing: BTreeMap<DocumentId, shared_store::Refresh>,
    /// A catalog catch-up in flight, reading back records written since this time.
    refreshing_catalog: Option<u64>,
    /// When the last notice from a shared store arrived (or the catalog was read at
    /// startup): a catch-up reads back records written since shortly before.
    last_notice_ms: Option<u64>,
    /// Plain peers told a document is unavailable, to be offered it when it arrives
    /// (`repo/wanted.rs`; each connection's share is bounded there).
    wanted: BTreeMap<DocumentId, BTreeSet<ConnectionId>>,
    wanted_seq: u64,
    /// Ephemeral messages already relayed, by (sender, session) (`repo/ephemeral.rs`).
    ephemeral_seen: ephemeral::EphemeralSeen,
    /// Our ephemeral session id, drawn at the first broadcast.
    ephemeral_session: Option<String>,
    pending_commands: usize,
    next_op: u64,
    use_clock: u64,
    ephemeral_count: u64,
    evictions: u64,
    now_ms: u64,
    tick_scheduled: bool,
    out: Vec<Output>,
}

impl Repo {
    /// A repo that does nothing until it receives [`Input::Start`].
    pub fn new(config: RepoConfig) -> Self {
        Self {
            config,
            phase: Phase::Starting {
                catalog: None,
                storage_id: None,
                queued: VecDeque::new(),
            },
            storage_id: None,
            catalog: BTreeMap::new(),
            items: ItemSet::new(),
            docs: BTreeMap::new(),
            loading: BTreeMap::new(),
            storage_ops: BTreeMap::new(),
            conns: BTreeMap::new(),
            parked: BTreeMap::new(),
            protected: BTreeSet::new(),
            finding: BTreeMap::new(),
            fetching: BTreeMap::new(),
            pulls: BTreeMap::new(),
            failed_writes: Vec::new(),
            sweeps: BTreeSet::new(),
            refreshing: BTreeMap::new(),
            refreshing_catalog: None,
            last_notice_ms: None,
            wanted: BTreeMap::new(),
            wanted_seq: 0,
            ephemeral_seen: ephemeral::EphemeralSeen::default(),
            ephemeral_session: None,
            pending_commands: 0,
            next_op: 0,
            use_clock: 0,
            ephemeral_count: 0,
            evictions: 0,
            now_ms: 0,
            tick_scheduled: false,
            out: Vec::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &RepoConfig {
        &self.config
    }

    /// Whether startup finished.
    pub fn is_ready(&self) -> bool {
        matches!(self.phase, Phase::Ready)
    }

    /// Whether startup failed (storage could not be read): the repo refuses every
    /// command, and its driver should stop and report it (a supervisor may restart it).
    pub fn has_failed(&self) -> bool {
        matches!(self.phase, Phase::Failed)
    }

    /// This repo's storage id, once ready.
    pub fn storage_id(&self) -> Option<&StorageId> {
        self.storage_id.as_ref()
    }

    /// The document, if it is in memory now. Use [`Command::Open`] to load it.
    pub fn document(&self, doc: &DocumentId) -> Option<&Automerge> {
        self.docs.get(doc).map(|d| &d.doc)
    }

    /// Metadata of every known document (tombstones included), in id order.
    pub fn catalog(&self) -> &BTreeMap<DocumentId, DocumentMeta> {
        &self.catalog
    }

    /// The reconciliation item set (id → heads digest).
    pub fn items(&self) -> &ItemSet {
        &self.items
    }

    /// Connections and their counters.
    pub fn connections(&self) -> Vec<ConnectionInfo> {
        self.conns.iter().map(|(id, c)| c.info(*id)).collect()
    }

    /// What each ready connection's peer is known to have of `doc`. Read-only; cheap
    /// (one lookup per connection).
    pub fn peer_doc_sync(&self, doc: &DocumentId) -> Vec<PeerDocSync> {
        let loaded = self.docs.get(doc);
        self.conns
            .iter()
            .filter(|(_, c)| c.is_ready())
            .map(|(conn, c)| {
                let session = loaded
                    .and_then(|d| d.sessions.get(conn))
                    .or_else(|| self.parked.get(&(*doc, *conn)));
                // The queue is keyed by the priority at enqueue time, which may have
                // changed since: scan it (it is bounded by the catalog).
                let queued = c.queue.contains(doc);
                PeerDocSync {
                    conn: *conn,
                    their_heads: session.and_then(|s| s.state.their_heads.clone()),
                    in_sync: session.is_some_and(|s| s.in_sync),
                    pending: queued || c.active.contains(doc),
                    reconciled: c.reconcile_reported,
                }
            })
            .collect()
    }

    /// Counters.
    pub fn stats(&self) -> RepoStats {
        RepoStats {
            documents: self.catalog.len(),
            loaded: self.docs.len(),
            storage_in_flight: self.storage_ops.len(),
            connections: self.conns.len(),
            evictions: self.evictions,
            parked_sessions: self.parked.len(),
        }
    }

    /// Feeds one input; returns what the driver must do, in order.
    pub fn handle(&mut self, now_ms: u64, rng: &mut dyn RngCore, input: Input) -> Vec<Output> {
        self.now_ms = self.now_ms.max(now_ms);
        match &mut self.phase {
            Phase::Ready => self.dispatch(rng, input),
            Phase::Failed => {
                if let Input::Command { id, .. } = input {
                    self.reply(
                        id,
                        Err(RepoError::Storage("repo failed to start".to_string())),
                    );
                }
            }
            Phase::Starting { queued, .. } => match input {
                Input::Start => self.start(),
                Input::StorageCompleted { id, result } => self.startup_completed(rng, id, result),
                other => {
                    // Bounded: a driver feeding more before start has finished is refused.
                    if queued.len() >= self.config.max_pending_commands {
                        if let Input::Command { id, .. } = other {
                            self.reply(id, Err(RepoError::Busy("still starting".into())));
                        }
                    } else {
                        queued.push_back(other);
                    }
                }
            },
        }
        if self.is_ready() {
            self.trim_memory();
            if !self.tick_scheduled {
                self.tick_scheduled = true;
                self.out.push(Output::ScheduleTick {
                    at_ms: self.now_ms + self.config.tick_interval_ms,
                });
            }
        }
        std::mem::take(&mut self.out)
    }

    fn dispatch(&mut self, rng: &mut dyn RngCore, input: Input) {
        match input {
            Input::Start => {}
            Input::Command { id, command } => self.command(rng, id, command),
            Input::ConnectionOpened { conn, initiator } => self.connection_opened(conn, initiator),
            Input::CloudEndpoint { conn } => self.cloud_endpoint(conn),
            Input::ConnectionAccess { conn, access } => self.connection_access(conn, access),
            Input::ProtectDocument { doc } => self.protect(doc),
            Input::ConnectionClosed { conn } => self.connection_closed(conn),
            Input::MessageReceived { conn, bytes } => self.message_received(rng, conn, bytes),
            Input::HeadsAnnounced { doc, heads, from } => self.heads_announced(doc, &heads, from),
            Input::StorageChanged { doc } => self.storage_changed(doc),
            Input::StorageCompleted { id, result } => self.storage_completed(rng, id, result),
            Input::Tick => {
                self.tick_scheduled = false;
                self.tick();
            }
        }
    }

    // ---- startup ------------------------------------------------------------------

    fn start(&mut self) {
        self.storage(
            Purpose::StartCatalog,
            StorageOp::LoadRange {
                prefix: persist::meta_prefix(),
            },
        );
        self.storage(
            Purpose::StartStorageId,
            StorageOp::Load {
                key: persist::storage_id_key(),
            },
        );
    }

    fn startup_completed(
        &mut self,
        rng: &mut dyn RngCore,
        id: StorageOpId,
        result: Result<StorageResult, StorageError>,
    ) {
        let purpose = self.storage_ops.remove(&id);
        let Phase::Starting {
            catalog,
            storage_id,
            ..
        } = &mut self.phase
        else {
            return;
        };
        match (purpose, result) {
            (Some(Purpose::StartCatalog), Ok(StorageResult::Range(entries))) => {
                *catalog = Some(entries)
            }
            (Some(Purpose::StartStorageId), Ok(StorageResult::Value(value))) => {
                *storage_id = Some(value)
            }
            (Some(Purpose::Write { .. }), Ok(_)) => return,
            (_, Err(error)) => {
                tracing::error!(%error, "repo start failed");
                self.out.push(Output::Event(Event::StorageFailed { error }));
                let queued = match std::mem::replace(&mut self.phase, Phase::Failed) {
                    Phase::Starting { queued, .. } => queued,
                    _ => VecDeque::new(),
                };
                for input in queued {
                    if let Input::Command { id, .. } = input {
                        self.reply(
                            id,
                            Err(RepoError::Storage("repo failed to start".to_string())),
                        );
                    }
                }
                return;
            }
            _ => return,
        }
        if catalog.is_none() || storage_id.is_none() {
            return;
        }
        let Phase::Starting {
            catalog,
            storage_id,
            queued,
        } = std::mem::replace(&mut self.phase, Phase::Ready)
        else {
            return;
        };
        for (key, value) in catalog.unwrap_or_default() {
            let Some(doc) = key
                .components()
                .get(2)
                .and_then(|s| DocumentId::parse(s).ok())
            else {
                continue;
            };
            match DocumentMeta::decode(&value) {
                Ok(meta) => {
                    self.items.insert(doc, meta.digest());
                    self.catalog.insert(doc, meta);
                }
                Err(error) => {
                    tracing::warn!(doc = %doc, %error, "unreadable document metadata");
                    self.out.push(Output::Event(Event::DocumentDamaged {
                        doc,
                        reason: format!("metadata unreadable: {error}"),
                    }));
                }
            }
        }
        let existing = storage_id
            .flatten()
            .and_then(|bytes| String::from_utf8(bytes).ok());
        let id = match existing {
            Some(id) => StorageId::new(id),
            None => {
                let id = StorageId::random(rng);
                let mut batch = WriteBatch::new();
                batch.put(persist::storage_id_key(), id.as_str().as_bytes().to_vec());
                self.write(None, None, Vec::new(), batch);
                id
            }
        };
        self.storage_id = Some(id.clone());
        // The catalog was just read: a catch-up after missed notices need not look
        // at records written before now (`repo/shared_store.rs`).
        self.last_notice_ms = Some(self.now_ms);
        self.out.push(Output::Event(Event::Ready {
            storage_id: id,
            documents: self.catalog.len(),
        }));
        for input in queued {
            self.dispatch(rng, input);
        }
    }

    // ---- storage ------------------------------------------------------------------

    fn storage(&mut self, purpose: Purpose, op: StorageOp) {
        let id = StorageOpId(self.next_op);
        self.next_op += 1;
        self.storage_ops.insert(id, purpose);
        self.out.push(Output::Storage { id, op });
    }

    fn write(
        &mut self,
        doc: Option<DocumentId>,
        heads: Option<Vec<ChangeHash>>,
        replies: Vec<(CommandId, Reply)>,
        batch: WriteBatch,
    ) {
        self.write_replacing(doc, heads, replies, batch, Vec::new());
    }

    /// [`Repo::write`] for a save whose compaction deletes `replaced`.
    fn write_replacing(
        &mut self,
        doc: Option<DocumentId>,
        heads: Option<Vec<ChangeHash>>,
        replies: Vec<(CommandId, Reply)>,
        batch: WriteBatch,
        replaced: Vec<StorageKey>,
    ) {
        if let Some(d) = doc.and_then(|d| self.docs.get_mut(&d)) {
            d.writes_in_flight += 1;
            d.saving |= heads.is_some();
        }
        let retry = heads.is_none().then(|| batch.clone());
        self.storage(
            Purpose::Write {
                doc,
                heads,
                replies,
                retry,
                replaced,
            },
            StorageOp::Write(batch),
        );
    }

    fn storage_completed(
        &mut self,
        rng: &mut dyn RngCore,
        id: StorageOpId,
        result: Result<StorageResult, StorageError>,
    ) {
        let Some(purpose) = self.storage_ops.remove(&id) else {
            tracing::debug!(op = id.0, "completion for an unknown storage op");
            return;
        };
        match purpose {
            Purpose::StartCatalog | Purpose::StartStorageId => {}
            Purpose::LoadChunks(doc) => self.load_part_completed(rng, doc, true, result),
            Purpose::LoadConflicts(doc) => self.load_part_completed(rng, doc, false, result),
            Purpose::SweepDeleted(doc) => self.sweep_completed(doc, result),
            Purpose::Refresh(doc, part) => self.refresh_part_completed(doc, part, result),
            Purpose::RefreshCatalog => self.catalog_refreshed(result),
            Purpose::Write {
                doc,
                heads,
                replies,
                retry,
                replaced,
            } => {
                let mut loaded = doc.and_then(|d| self.docs.get_mut(&d));
                if heads.is_some()
                    && let Some(d) = loaded.as_mut()
                {
                    d.saving = false;
                    d.replacing.clear();
                }
                match result {
                    Ok(_) => {
                        if let Some(d) = loaded {
                            d.writes_in_flight = d.writes_in_flight.saturating_sub(1);
                            if let Some(h) = heads {
                                d.durable_heads = h;
                                d.stored = true;
                            }
                        }
                        for (cid, reply) in replies {
                            self.reply(cid, Ok(reply));
                        }
                        if let Some(d) = doc {
                            self.save_waiting(d);
                            self.release_held(d);
                            self.record_after_save(d);
                        }
                    }
                    Err(error) => {
                        tracing::error!(%error, doc = ?doc, "storage write failed");
                        if let Some(d) = loaded {
                            d.writes_in_flight = d.writes_in_flight.saturating_sub(1);
                            if heads.is_some() {
                                // Save everything since the last confirmed save again:
                                // now if changes wait for it, else at the next tick.
                                d.saved_heads = d.durable_heads.clone();
                                // What a failed compaction meant to delete is still there.
                                d.chunk_keys.extend(replaced);
                                // A record written alone until the retry must not name
                                // changes the stored chunks lack.
                                if let Some(meta) = doc.and_then(|id| self.catalog.get_mut(&id))
                                    && !meta.deleted
                                {
                                    meta.set_heads(&d.durable_heads);
                                    let digest = meta.digest();
                                    if let Some(id) = doc {
                                        self.items.insert(id, digest);
                                    }
                                }
                            }
                        }
                        for (cid, _) in replies {
                            let refused = match &error {
                                StorageError::Full(why) => {
                                    RepoError::StorageFull(format!("storage full: {why}"))
                                }
                                other => RepoError::Storage(other.to_string()),
                            };
                            self.reply(cid, Err(refused));
                        }
                        let identity = retry.as_ref().is_some_and(|b| {
                            b.ops().iter().any(|op| {
                                matches!(op, WriteOp::Put { key, .. } if *key == persist::storage_id_key())
                            })
                        });
                        if identity {
                            // A new store's id never reached it: after a restart it would
                            // be another peer, and whatever was confirmed under this id
                            // would name a store that does not exist. Stop, as a failed
                            // start does; the driver reports it.
                            tracing::error!(%error, "the store's id could not be written");
                            self.phase = Phase::Failed;
                        } else if let Some(batch) = retry {
                            if self.failed_writes.len() >= MAX_FAILED_WRITES {
                                tracing::error!(
                                    "too many failed writes waiting to be written again; \
                                     the oldest is dropped (restart once storage works)"
                                );
                                self.failed_writes.remove(0);
                            }
                            self.failed_writes.push(batch);
                        }
                        self.out.push(Output::Event(Event::StorageFailed { error }));
                        if let Some(d) = doc {
                            self.save_waiting(d);
                            self.record_after_save(d);
                        }
                    }
                }
            }
        }
    }

    fn load_part_completed(
        &mut self,
        rng: &mut dyn RngCore,
        doc: DocumentId,
        chunks: bool,
        result: Result<StorageResult, StorageError>,
    ) {
        let Some(loading) = self.loading.get_mut(&doc) else {
            return;
        };
        let entries = match result {
            Ok(StorageResult::Range(entries)) => entries,
            Ok(_) => Vec::new(),
            Err(error) => {
                tracing::error!(%error, doc = %doc, "loading a document failed");
                let loading = self.loading.remove(&doc).unwrap_or_default();
                self.fail_waiters(doc, loading.waiters, RepoError::Storage(error.to_string()));
                self.out.push(Output::Event(Event::StorageFailed { error }));
                return;
            }
        };
        if chunks {
            loading.chunks = Some(entries);
        } else {
            loading.conflicts = Some(entries);
        }
        if loading.chunks.is_some() && loading.conflicts.is_some() {
            let loading = self.loading.remove(&doc).unwrap_or_default();
            self.finish_load(rng, doc, loading);
        }
    }

    fn start_load(&mut self, doc: DocumentId, waiter: Waiter) {
        if let Some(loading) = self.loading.get_mut(&doc) {
            loading.waiters.push(waiter);
            return;
        }
        self.loading.insert(
            doc,
            Loading {
                waiters: vec![waiter],
                ..Loading::default()
            },
        );
        self.storage(
            Purpose::LoadChunks(doc),
            StorageOp::LoadRange {
                prefix: persist::document_prefix(&doc),
            },
        );
        self.storage(
            Purpose::LoadConflicts(doc),
            StorageOp::LoadRange {
                prefix: persist::conflicts_prefix(&doc),
            },
        );
    }

    fn finish_load(&mut self, rng: &mut dyn RngCore, doc_id: DocumentId, loading: Loading) {
        let loaded = persist::load_document(loading.chunks.unwrap_or_default());
        for (key, reason) in &loaded.damaged {
            tracing::warn!(doc = %doc_id, key = %key, %reason, "damaged chunk skipped");
            self.out.push(Output::Event(Event::DocumentDamaged {
                doc: doc_id,
                reason: format!("chunk {key}: {reason}"),
            }));
        }
        let mut doc = LoadedDoc::new(loaded.doc, rng, self.tick_use(), self.config.actor_prefix);
        let heads = doc.doc.get_heads();
        let mut record_wrong = false;
        if let Some(meta) = self.catalog.get_mut(&doc_id) {
            let missing: Vec<ChangeHash> = meta
                .change_heads()
                .into_iter()
                .filter(|h| doc.doc.get_change_by_hash(h).is_none())
                .collect();
            if !missing.is_empty() {
                self.out.push(Output::Event(Event::DocumentDamaged {
                    doc: doc_id,
                    reason: format!("{} recorded heads missing after load", missing.len()),
                }));
            }
            if meta.change_heads() != heads && !meta.deleted {
                meta.set_heads(&heads);
                self.items.insert(doc_id, meta.digest());
                record_wrong = true;
            }
        }
        doc.durable_heads = heads.clone();
        doc.saved_heads = heads;
        doc.stored = true;
        doc.chunk_keys = loaded.chunk_keys;
        doc.incremental_chunks = loaded.incremental_chunks;
        doc.chunk_bytes = loaded.chunk_bytes;
        doc.stored_sync = loaded.sync_states;
        for (_, value) in loading.conflicts.unwrap_or_default() {
            if let Ok(record) = ConflictRecord::decode(&value) {
                doc.conflict_ids.insert(record.identity());
                doc.conflict_log.push(record);
            }
        }
        self.docs.insert(doc_id, doc);
        for waiter in loading.waiters {
            self.run_waiter(rng, doc_id, waiter);
        }
        if record_wrong {
            // Peers reconciled against the heads the record named, and took those as
            // ours: tell them what we hold, as after a change, so that what differs is
            // synced now rather than at the next reconnect. The record is put right on
            // disk too. (A store written before records waited for saves can hold such
            // a record.)
            self.write_record(doc_id, Vec::new());
            self.push_to_peers(doc_id);
        }
    }

    /// A load failed: commands hear why; a peer whose message (or our push to it) was
    /// waiting is disconnected, not misbehaving, so that the next connection syncs
    /// everything again instead of leaving that exchange half done.
    fn fail_waiters(&mut self, doc: DocumentId, waiters: Vec<Waiter>, error: RepoError) {
        let mut peers = BTreeSet::new();
        for waiter in waiters {
            match waiter {
                Waiter::Command(id, _) => {
                    self.pending_commands = self.pending_commands.saturating_sub(1);
                    self.reply(id, Err(error.clone()));
                }
                Waiter::PeerSync { conn, .. } | Waiter::PeerDeleted(conn) => {
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.pending_inbound = c.pending_inbound.saturating_sub(1);
                    }
                    peers.insert(conn);
                }
                Waiter::QueuedSync(conn) => {
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.active.remove(&doc);
                    }
                    peers.insert(conn);
                }
                // The change is in the store; peers get it when they next sync it.
                Waiter::Push | Waiter::Refresh => {}
            }
        }
        for conn in peers {
            if self.conns.contains_key(&conn) {
                self.disconnect(
                    conn,
                    format!("storage failed loading document {doc} ({error}); resync on reconnect"),
                    false,
                );
            }
        }
    }

    fn run_waiter(&mut self, rng: &mut dyn RngCore, doc: DocumentId, waiter: Waiter) {
        match waiter {
            Waiter::Command(id, command) => {
                self.pending_commands = self.pending_commands.saturating_sub(1);
                self.command(rng, id, command);
            }
            Waiter::PeerSync { conn, data } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.pending_inbound = c.pending_inbound.saturating_sub(1);
                    self.peer_sync(conn, doc, data);
                }
            }
            Waiter::PeerDeleted(conn) => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.pending_inbound = c.pending_inbound.saturating_sub(1);
                }
                // Several peers may have sent the tombstone while the document loaded:
                // the first applies it. Another would write the record again on its
                // own, and that write could land while the first one's batch, which
                // deletes the data, failed: a crash before its retry would leave the
                // data on disk under a tombstone for good (simulation seed 218).
                if !self.catalog.get(&doc).is_some_and(|m| m.deleted) {
                    self.apply_tombstone(doc, ChangeOrigin::Remote(conn), None);
                }
            }
            Waiter::QueuedSync(conn) => {
                if self.docs.contains_key(&doc) && self.conns.contains_key(&conn) {
                    self.send_sync(doc, conn);
                    // A session resumed already settled sends nothing and will hear
                    // nothing: release its slot, or the queue stalls behind it.
                    if self.settle_if_in_sync(doc, conn) {
                        self.pump_queue(conn);
                    }
                } else if let Some(c) = self.conns.get_mut(&conn) {
                    c.active.remove(&doc);
                    self.pump_queue(conn);
                }
            }
            Waiter::Push => self.push_to_peers(doc),
            Waiter::Refresh => self.storage_changed(Some(doc)),
        }
    }

    // ---- memory -------------------------------------------------------------------

    fn tick_use(&mut self) -> u64 {
        self.use_clock += 1;
        self.use_clock
    }

    fn touch(&mut self, doc: &DocumentId) {
        let t = self.tick_use();
        if let Some(d) = self.docs.get_mut(doc) {
            d.last_used = t;
        }
    }

    fn bytes_in_memory(&self) -> u64 {
        self.docs.values().map(|d| d.chunk_bytes).sum()
    }

    /// Evicts least-recently-used idle documents until within budget.
    fn trim_memory(&mut self) {
        let (max_docs, max_bytes) = (
            self.config.max_docs_in_memory,
            self.config.max_bytes_in_memory,
        );
        let mut count = self.docs.len();
        let mut bytes = self.bytes_in_memory();
        if count <= max_docs && bytes <= max_bytes {
            return;
        }
        // Once over budget, evict down to a low-water mark (90 %), so the scan below,
        // which visits every loaded document, runs once per many inputs rather than on
        // every input while a cold sync keeps loading documents.
        let (max_docs, max_bytes) = (max_docs - max_docs / 10, max_bytes - max_bytes / 10);
        let mut candidates: Vec<(u64, u64, DocumentId)> = self
            .docs
            .iter()
            .filter(|(id, d)| {
                d.evictable()
                    && !self.finding.contains_key(*id)
                    // Its waiting peers are answered from memory (`repo/fetch.rs`).
                    && !self.fetching.contains_key(*id)
                    && !self.conns.values().any(|c| c.active.contains(*id))
                    && !self.loading.contains_key(*id)
            })
            .map(|(id, d)| (d.last_used, d.chunk_bytes, *id))
            .collect();
        candidates.sort();
        for (_, size, id) in candidates {
            if count <= max_docs && bytes <= max_bytes {
                break;
            }
            self.evict(id);
            count -= 1;
            bytes = bytes.saturating_sub(size);
        }
    }

    fn evict(&mut self, id: DocumentId) {
        // Sessions stay parked in memory (with their dirty flag), so only states that
        // changed since they were last written need writing. The write is not counted
        // against the document: it is leaving memory, and a reloaded copy must not
        // inherit the count.
        let mut batch = WriteBatch::new();
        self.persist_sessions(&id, &mut batch);
        if !batch.is_empty() {
            self.write(None, None, Vec::new(), batch);
        }
        if let Some(doc) = self.docs.remove(&id) {
            for (conn, session) in doc.sessions {
                self.parked.insert((id, conn), session.parked());
            }
        }
        self.evictions += 1;
        tracing::debug!(doc = %id, "evicted");
    }

    /// Adds the sync states of `doc` that changed since last written to `batch`.
    fn persist_sessions(&mut self, doc: &DocumentId, batch: &mut WriteBatch) {
        // A document a peer introduced and never sent has nothing worth remembering.
        if !self.catalog.contains_key(doc) {
            return;
        }
        let Some(d) = self.docs.get_mut(doc) else {
            return;
        };
        for (conn, session) in d.sessions.iter_mut() {
            if !session.dirty {
                continue;
            }
            let Some(storage) = self.conns.get(conn).and_then(|c| c.persistent_storage_id()) else {
                continue;
            };
            batch.put(
                persist::sync_state_key(doc, &storage),
                session.state.encode(),
            );
            session.dirty = false;
        }
    }

    fn tick(&mut self) {
        self.retry_failed_writes();
        self.sweep_deleted();
        self.expire_requests();
        self.expire_fetches();
        self.expire_pulls();
        let ids: Vec<DocumentId> = self.docs.keys().copied().collect();
        for id in ids {
            let mut batch = WriteBatch::new();
            self.persist_sessions(&id, &mut batch);
            // Retry saves that failed.
            let needs_save = self
                .docs
                .get(&id)
                .is_some_and(|d| d.writes_in_flight == 0 && d.saved_heads != d.doc.get_heads());
            if needs_save {
                self.save_document(id, batch, Vec::new());
                // While the save was failed, the catalog (and the digest peers reconcile
                // against) named the durable heads: a peer that reconciled meanwhile
                // found nothing different, and hears of the change only now. The
                // message waits for the save to complete (`send_sync`).
                self.push_to_peers(id);
            } else if !batch.is_empty() {
                self.write(Some(id), None, Vec::new(), batch);
            }
        }
    }

    // ---- output helpers -------------------------------------------------------------

    fn reply(&mut self, id: CommandId, result: Result<Reply, RepoError>) {
        self.out.push(Output::Reply { id, result });
    }

    fn event(&mut self, event: Event) {
        self.out.push(Output::Event(event));
    }
}

#[cfg(test)]
mod shared_store_tests;
#[cfg(test)]
mod tests;
