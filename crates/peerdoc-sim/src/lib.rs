//! A deterministic simulator for the peerdoc engine.
//!
//! [`run`] drives N instances of the real [`Repo`] over a simulated network and simulated
//! storage, from one seed: random edits on random documents by random peers, partitions
//! and heals, connections reset mid-exchange (the sync protocol needs an in-order stream,
//! so loss is a reset and a reconnect), stale frames from old connections delivered late,
//! and crashes that lose every storage write not yet acknowledged. After the schedule the
//! network heals and goes quiet, and [`run`] checks convergence:
//!
//! - every peer holds identical heads and identical JSON for every live document;
//! - no deleted document has come back anywhere;
//! - every change acknowledged as durable on its origin is present everywhere.
//!
//! Everything random comes from one ChaCha rng; maps are `BTreeMap`s; so a seed replays
//! the exact run. A failure names its seed: `SEED=<n> cargo test -p peerdoc-sim`.
//! [`SimConfig::with_storage_faults`] also fails storage operations by seed.
//!
//! This file is longer than the ~800-line rule: the schedule, its events and the final
//! checks all work on the same simulated peers and storage, and a seed must replay the
//! whole run from this one place; the per-test harness is in `cluster.rs`.
//!
//! ```
//! let report = peerdoc_sim::run(&peerdoc_sim::SimConfig::from_seed(7)).unwrap();
//! assert!(report.acked_changes > 0);
//! ```

#![deny(missing_docs)]

pub mod cluster;

pub use cluster::{Cluster, Frame, StorageFaults, Traffic};

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use automerge::transaction::Transactable;
use automerge::{ChangeHash, ObjType, ROOT, ReadDoc};
use peerdoc_core::repo::{
    ChangeRequest, Command, CommandId, Event, Input, Output, Reply, Repo, RepoConfig, StorageOp,
    StorageResult,
};
use peerdoc_core::wire::Message;
use peerdoc_core::{ConnectionId, DocumentId, MemoryStorage, PeerId, Storage, model, persist};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The shape of one simulated run.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Seed of every random choice.
    pub seed: u64,
    /// Number of peers.
    pub peers: usize,
    /// Documents to create over the run.
    pub docs: usize,
    /// Steps of random activity before the final heal.
    pub steps: usize,
    /// The engine's in-memory document budget (small, to exercise eviction).
    pub max_docs_in_memory: usize,
    /// The engine's compaction threshold (small, to exercise compaction).
    pub compaction_threshold: usize,
    /// Percent chance per step of a crash.
    pub crash_percent: u32,
    /// Percent chance per step of a connection reset.
    pub reset_percent: u32,
    /// Percent chance per step of a partition change.
    pub partition_percent: u32,
    /// The peer that runs as the team's cloud (`RepoConfig::cloud`), in half the seeds:
    /// the others keep receipts of what it confirms, relay them, and sometimes fetch
    /// documents by id (`Command::Find`).
    pub cloud: Option<usize>,
    /// Storage operations that fail (an I/O error: a write writes nothing, a read reads
    /// nothing), per thousand, during the random steps; storage always works during the
    /// final heal. Zero in [`SimConfig::from_seed`]; see
    /// [`SimConfig::with_storage_faults`].
    pub storage_faults_per_mille: u32,
}

impl SimConfig {
    /// Mixed sizes derived from the seed: 2 to 8 peers, 1 to 50 documents.
    pub fn from_seed(seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed_5eed);
        let peers = rng.random_range(2..=8);
        let docs = rng.random_range(1..=50);
        Self {
            seed,
            peers,
            docs,
            steps: rng.random_range(50..=200),
            max_docs_in_memory: rng.random_range(2..=60),
            compaction_threshold: rng.random_range(2..=16),
            crash_percent: rng.random_range(0..=3),
            reset_percent: rng.random_range(0..=5),
            partition_percent: rng.random_range(0..=3),
            // Drawn last, so that the fields above are what they always were per seed.
            cloud: rng.random_bool(0.5).then_some(0),
            storage_faults_per_mille: 0,
        }
    }

    /// [`SimConfig::from_seed`] with storage failures injected: 1 to 15 % of storage
    /// operations, by seed.
    pub fn with_storage_faults(seed: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xfa17);
        Self {
            storage_faults_per_mille: rng.random_range(10..=150),
            ..Self::from_seed(seed)
        }
    }
}

/// What a successful run did.
#[derive(Debug, Clone, Default)]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// Peers simulated.
    pub peers: usize,
    /// Documents created.
    pub docs_created: usize,
    /// Changes acknowledged as durable.
    pub acked_changes: usize,
    /// Documents deleted (acknowledged).
    pub deletes: usize,
    /// Crashes (each followed by a restart).
    pub crashes: usize,
    /// Connection resets.
    pub resets: usize,
    /// Partition changes.
    pub partitions: usize,
    /// Frames delivered on connections that had already closed.
    pub stale_frames: usize,
    /// Frames delivered in all.
    pub frames: usize,
    /// Conflicts logged across peers.
    pub conflicts: usize,
    /// Cloud receipts held at the end, across peers (each checked against the cloud's
    /// storage).
    pub receipts: usize,
    /// `Command::Find`s issued.
    pub finds: usize,
    /// Documents evicted across peers.
    pub evictions: u64,
    /// Storage operations failed by injection.
    pub storage_failures: usize,
    /// Simulated milliseconds.
    pub sim_ms: u64,
}

/// A broken invariant, with the seed that replays it.
#[derive(Debug, Clone)]
pub struct SimFailure {
    /// The seed.
    pub seed: u64,
    /// What went wrong.
    pub reason: String,
}

impl fmt::Display for SimFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "simulation seed {} failed: {}\nreplay: SEED={} cargo test -p peerdoc-sim --test convergence",
            self.seed, self.reason, self.seed
        )
    }
}

impl std::error::Error for SimFailure {}

/// Runs one simulation and checks convergence.
pub fn run(config: &SimConfig) -> Result<SimReport, SimFailure> {
    let mut sim = Sim::new(config.clone());
    sim.run().map_err(|reason| SimFailure {
        seed: config.seed,
        reason,
    })?;
    sim.report.sim_ms = sim.now;
    sim.report.evictions = sim
        .nodes
        .iter()
        .filter_map(|n| n.repo.as_ref())
        .map(|r| r.stats().evictions)
        .sum::<u64>()
        + sim.evictions_before_crash;
    Ok(sim.report)
}

#[derive(Debug)]
enum Pending {
    Find,
    Create,
    Change(DocumentId),
    Delete(DocumentId),
}

struct Node {
    store: MemoryStorage,
    repo: Option<Repo>,
    incarnation: u64,
    storage_queue: VecDeque<(peerdoc_core::repo::StorageOpId, StorageOp)>,
    storage_scheduled: bool,
    next_command: u64,
    pending: BTreeMap<CommandId, Pending>,
}

#[derive(Debug)]
struct Link {
    conns: [ConnectionId; 2],
    /// When both sides learn of the connection; a close is never delivered before it.
    opened_at: u64,
}

#[derive(Debug)]
enum Ev {
    Deliver {
        node: usize,
        incarnation: u64,
        conn: ConnectionId,
        bytes: Vec<u8>,
    },
    Opened {
        node: usize,
        incarnation: u64,
        conn: ConnectionId,
        initiator: bool,
    },
    Closed {
        node: usize,
        incarnation: u64,
        conn: ConnectionId,
    },
    StorageDone {
        node: usize,
        incarnation: u64,
    },
    Tick {
        node: usize,
        incarnation: u64,
    },
    Restart {
        node: usize,
    },
}

struct Sim {
    config: SimConfig,
    rng: ChaCha8Rng,
    now: u64,
    seq: u64,
    events: BTreeMap<(u64, u64), Ev>,
    nodes: Vec<Node>,
    /// Live links by node pair (lower index first).
    links: BTreeMap<(usize, usize), Link>,
    /// Connection id → (node, peer node, peer's connection id).
    conn_index: BTreeMap<ConnectionId, (usize, usize, ConnectionId)>,
    /// Last scheduled delivery time per (receiving connection), to keep streams in order.
    last_delivery: BTreeMap<ConnectionId, u64>,
    /// Nodes on the "island" side of a partition (empty = no partition).
    island: BTreeSet<usize>,
    next_conn: u64,
    acked: Vec<(usize, DocumentId, ChangeHash)>,
    deleted: BTreeSet<DocumentId>,
    damaged: Vec<String>,
    /// Sync messages that revealed heads their sender had not yet stored durably.
    undurable: Vec<String>,
    evictions_before_crash: u64,
    report: SimReport,
    /// Draws the injected storage failures, apart from `rng`, so a seed without
    /// failures runs exactly as it always did.
    fault_rng: ChaCha8Rng,
    /// Failures are injected during the random steps, not during the final heal.
    faults_on: bool,
}

const MAX_FINAL_EVENTS: usize = 2_000_000;

impl Sim {
    fn new(config: SimConfig) -> Self {
        let nodes = (0..config.peers)
            .map(|_| Node {
                store: MemoryStorage::new(),
                repo: None,
                incarnation: 0,
                storage_queue: VecDeque::new(),
                storage_scheduled: false,
                next_command: 0,
                pending: BTreeMap::new(),
            })
            .collect();
        Self {
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            fault_rng: ChaCha8Rng::seed_from_u64(config.seed ^ 0xfa17_fa17),
            faults_on: true,
            report: SimReport {
                seed: config.seed,
                peers: config.peers,
                ..SimReport::default()
            },
            config,
            now: 1_700_000_000_000,
            seq: 0,
            events: BTreeMap::new(),
            nodes,
            links: BTreeMap::new(),
            conn_index: BTreeMap::new(),
            last_delivery: BTreeMap::new(),
            island: BTreeSet::new(),
            next_conn: 0,
            acked: Vec::new(),
            deleted: BTreeSet::new(),
            damaged: Vec::new(),
            undurable: Vec::new(),
            evictions_before_crash: 0,
        }
    }

    fn repo_config(&self, node: usize) -> RepoConfig {
        let mut config = RepoConfig::new(PeerId::new(format!("peer-{node}")));
        config.max_docs_in_memory = self.config.max_docs_in_memory;
        config.compaction_threshold = self.config.compaction_threshold;
        config.max_concurrent_syncs_per_peer = 4;
        config.tick_interval_ms = 500;
        config.cloud = self.config.cloud == Some(node);
        config
    }

    fn schedule(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.events.insert((at, self.seq), ev);
    }

    fn run(&mut self) -> Result<(), String> {
        for node in 0..self.nodes.len() {
            self.start_node(node);
        }
        for _ in 0..self.config.steps {
            self.now += self.rng.random_range(1..=10);
            self.process_due();
            self.random_action();
            self.ensure_connections(false);
        }
        // Heal: no partition, everyone back up, everyone connected, until quiet.
        self.faults_on = false;
        self.island.clear();
        for node in 0..self.nodes.len() {
            if self.nodes[node].repo.is_none() {
                self.start_node(node);
            }
        }
        let mut handled = 0usize;
        let mut retry_ticks = 0;
        loop {
            self.ensure_connections(true);
            if self.is_quiet() {
                // A save that failed is retried at the next tick (at most a second later
                // in the daemon), which quiet does not wait for: after injected failures,
                // fire the ticks and let what they start finish.
                if self.report.storage_failures > 0 && retry_ticks < 3 {
                    retry_ticks += 1;
                    for node in 0..self.nodes.len() {
                        self.feed(node, Input::Tick);
                    }
                    continue;
                }
                break;
            }
            let Some((&(at, seq), _)) = self.events.iter().next() else {
                break;
            };
            let Some(ev) = self.events.remove(&(at, seq)) else {
                break;
            };
            self.now = self.now.max(at);
            self.handle_event(ev);
            handled += 1;
            if handled > MAX_FINAL_EVENTS {
                return Err(format!(
                    "the network did not go quiet after healing: {}",
                    self.describe_activity()
                ));
            }
        }
        self.check()?;
        self.report.receipts = self.check_receipts()?;
        Ok(())
    }

    /// A receipt may tell someone to wipe a device, so every receipt any peer holds must
    /// be true of the cloud's durable storage: checked whenever the cloud crashes and at
    /// the end. Returns how many there are.
    fn check_receipts(&self) -> Result<usize, String> {
        let Some(cloud) = self.config.cloud else {
            return Ok(0);
        };
        // The cloud's side is read from its durable store only (it may be starting).
        let cloud_store = &self.nodes[cloud].store;
        let cloud_storage = cloud_store
            .get(&persist::storage_id_key())
            .map_err(|e| e.to_string())?
            .and_then(|bytes| String::from_utf8(bytes).ok());
        let mut count = 0;
        for (i, node) in self.nodes.iter().enumerate() {
            let Some(repo) = &node.repo else { continue };
            for (doc, meta) in repo.catalog() {
                if meta.deleted {
                    continue;
                }
                for (storage, receipt) in &meta.receipts {
                    if Some(storage) != cloud_storage.as_ref() {
                        return Err(format!(
                            "peer {i} holds a receipt for doc {doc} from {storage}, which is not the cloud"
                        ));
                    }
                    if !receipt.durable {
                        return Err(format!(
                            "peer {i} holds a non-durable receipt for doc {doc}"
                        ));
                    }
                    count += 1;
                    let deleted_there = cloud_store
                        .get(&persist::meta_key(doc))
                        .map_err(|e| e.to_string())?
                        .and_then(|bytes| persist::DocumentMeta::decode(&bytes).ok())
                        .is_some_and(|m| m.deleted);
                    if deleted_there {
                        continue;
                    }
                    let stored = cloud_store
                        .range(&persist::document_prefix(doc))
                        .map_err(|e| e.to_string())?;
                    let loaded = persist::load_document(stored);
                    for head in &receipt.heads {
                        let hash: ChangeHash = head
                            .parse()
                            .map_err(|_| format!("peer {i}: unparseable receipt head {head}"))?;
                        if loaded.doc.get_change_by_hash(&hash).is_none() {
                            return Err(format!(
                                "peer {i}'s receipt for doc {doc} names change {head}, which the cloud has not stored"
                            ));
                        }
                    }
                }
            }
        }
        Ok(count)
    }

    /// What is still going on, for a failure message.
    fn describe_activity(&self) -> String {
        let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
        for ev in self.events.values() {
            let kind = match ev {
                Ev::Deliver { bytes, node, .. } => {
                    match peerdoc_core::wire::Message::decode(bytes, usize::MAX) {
                        Ok(m) => format!(
                            "deliver {} to {node} doc {:?} loaded {:?}",
                            m.type_name(),
                            m.document_id(),
                            m.document_id().map(|d| self.nodes[*node]
                                .repo
                                .as_ref()
                                .map(|r| r.document(d).is_some()))
                        ),
                        Err(_) => "deliver ?".into(),
                    }
                }
                Ev::Opened { .. } => "opened".into(),
                Ev::Closed { .. } => "closed".into(),
                Ev::StorageDone { .. } => "storage".into(),
                Ev::Tick { .. } => "tick".into(),
                Ev::Restart { .. } => "restart".into(),
            };
            *kinds.entry(kind).or_default() += 1;
        }
        format!(
            "pending events {kinds:?}, links {}, storage queue lengths {:?}, their first ops {:?}",
            self.links.len(),
            self.nodes
                .iter()
                .map(|n| n.storage_queue.len())
                .collect::<Vec<_>>(),
            // The first few only: a livelock can queue millions.
            self.nodes
                .iter()
                .map(|n| n
                    .storage_queue
                    .iter()
                    .take(8)
                    .map(|(_, op)| match op {
                        StorageOp::LoadRange { prefix } => format!("range {prefix:?}"),
                        StorageOp::Load { key } => format!("load {key}"),
                        StorageOp::Write(b) => format!(
                            "write {:?}",
                            b.ops()
                                .iter()
                                .map(|o| match o {
                                    peerdoc_core::WriteOp::Put { key, .. } => format!("put {key}"),
                                    peerdoc_core::WriteOp::Delete { key } => format!("del {key}"),
                                })
                                .collect::<Vec<_>>()
                        ),
                    })
                    .collect::<Vec<_>>())
                .collect::<Vec<_>>()
        )
    }

    fn is_quiet(&self) -> bool {
        let n = self.nodes.len();
        let all_linked = self.links.len() == n * (n - 1) / 2;
        all_linked
            && self.nodes.iter().all(|node| {
                node.storage_queue.is_empty()
                    && node.repo.as_ref().is_some_and(|r| r.is_ready())
                    && node
                        .repo
                        .as_ref()
                        .is_some_and(|r| r.connections().iter().all(|c| c.peer.is_some()))
            })
            && !self
                .events
                .values()
                .any(|ev| !matches!(ev, Ev::Tick { .. }))
    }

    fn process_due(&mut self) {
        while let Some((&(at, seq), _)) = self.events.iter().next() {
            if at > self.now {
                break;
            }
            if let Some(ev) = self.events.remove(&(at, seq)) {
                self.handle_event(ev);
            }
        }
    }

    fn alive(&self, node: usize, incarnation: u64) -> bool {
        self.nodes[node].incarnation == incarnation && self.nodes[node].repo.is_some()
    }

    fn handle_event(&mut self, ev: Ev) {
        match ev {
            Ev::Deliver {
                node,
                incarnation,
                conn,
                bytes,
            } => {
                if self.alive(node, incarnation) {
                    self.report.frames += 1;
                    if !self.conn_index.contains_key(&conn) {
                        self.report.stale_frames += 1;
                    }
                    self.feed(node, Input::MessageReceived { conn, bytes });
                }
            }
            Ev::Opened {
                node,
                incarnation,
                conn,
                initiator,
            } => {
                if self.alive(node, incarnation) {
                    self.feed(node, Input::ConnectionOpened { conn, initiator });
                }
            }
            Ev::Closed {
                node,
                incarnation,
                conn,
            } => {
                if self.alive(node, incarnation) {
                    self.feed(node, Input::ConnectionClosed { conn });
                }
            }
            Ev::StorageDone { node, incarnation } => {
                if self.alive(node, incarnation) {
                    self.nodes[node].storage_scheduled = false;
                    if let Some((id, op)) = self.nodes[node].storage_queue.pop_front() {
                        let store = &self.nodes[node].store;
                        let fail = self.faults_on
                            && self.config.storage_faults_per_mille > 0
                            && self.fault_rng.random_range(0..1000)
                                < self.config.storage_faults_per_mille;
                        let result = if fail {
                            self.report.storage_failures += 1;
                            Err(peerdoc_core::StorageError::Io("injected: EIO".into()))
                        } else {
                            match op {
                                StorageOp::LoadRange { prefix } => {
                                    store.range(&prefix).map(StorageResult::Range)
                                }
                                StorageOp::Load { key } => {
                                    store.get(&key).map(StorageResult::Value)
                                }
                                StorageOp::Write(batch) => {
                                    store.write(batch).map(|()| StorageResult::Written)
                                }
                            }
                        };
                        self.feed(node, Input::StorageCompleted { id, result });
                    }
                    self.schedule_storage(node);
                }
            }
            Ev::Tick { node, incarnation } => {
                if self.alive(node, incarnation) {
                    self.feed(node, Input::Tick);
                }
            }
            Ev::Restart { node } => {
                if self.nodes[node].repo.is_none() {
                    self.start_node(node);
                }
            }
        }
    }

    fn start_node(&mut self, node: usize) {
        let config = self.repo_config(node);
        let n = &mut self.nodes[node];
        n.incarnation += 1;
        n.repo = Some(Repo::new(config));
        n.storage_queue.clear();
        n.storage_scheduled = false;
        n.pending.clear();
        self.feed(node, Input::Start);
    }

    fn crash(&mut self, node: usize) {
        // What the cloud loses now is what it had not stored: every receipt held
        // anywhere must already be backed by its storage.
        if self.config.cloud == Some(node)
            && let Err(error) = self.check_receipts()
        {
            self.undurable
                .push(format!("when the cloud crashed: {error}"));
        }
        let n = &mut self.nodes[node];
        if let Some(repo) = n.repo.take() {
            self.evictions_before_crash += repo.stats().evictions;
        }
        n.incarnation += 1;
        // Whatever the storage had not completed is lost.
        n.storage_queue.clear();
        n.storage_scheduled = false;
        n.pending.clear();
        self.report.crashes += 1;
        let pairs: Vec<(usize, usize)> = self
            .links
            .keys()
            .filter(|(a, b)| *a == node || *b == node)
            .copied()
            .collect();
        for pair in pairs {
            self.close_link(pair, false);
        }
        let delay = self.rng.random_range(20..=500);
        self.schedule(self.now + delay, Ev::Restart { node });
    }

    fn feed(&mut self, node: usize, input: Input) {
        let Sim {
            nodes, rng, now, ..
        } = self;
        let Some(repo) = nodes[node].repo.as_mut() else {
            return;
        };
        let outputs = repo.handle(*now, rng, input);
        let failed = repo.has_failed();
        self.apply_outputs(node, outputs);
        if failed {
            // Storage failed it at start: the process exits, its supervisor restarts it.
            self.crash(node);
        }
    }

    fn schedule_storage(&mut self, node: usize) {
        let n = &self.nodes[node];
        if n.storage_scheduled || n.storage_queue.is_empty() {
            return;
        }
        let incarnation = n.incarnation;
        self.nodes[node].storage_scheduled = true;
        let delay = self.rng.random_range(0..=3);
        self.schedule(self.now + delay, Ev::StorageDone { node, incarnation });
    }

    fn apply_outputs(&mut self, node: usize, outputs: Vec<Output>) {
        for output in outputs {
            match output {
                Output::Send { conn, bytes } => {
                    self.check_durable_heads(node, &bytes);
                    self.send(conn, bytes)
                }
                Output::Disconnect { conn, .. } => {
                    if let Some(&(a, b, _)) = self.conn_index.get(&conn) {
                        self.close_link((a.min(b), a.max(b)), false);
                    }
                }
                Output::Storage { id, op } => {
                    self.nodes[node].storage_queue.push_back((id, op));
                    self.schedule_storage(node);
                }
                Output::ScheduleTick { at_ms } => {
                    let incarnation = self.nodes[node].incarnation;
                    self.schedule(at_ms, Ev::Tick { node, incarnation });
                }
                Output::Reply { id, result } => {
                    let pending = self.nodes[node].pending.remove(&id);
                    match (pending, result) {
                        (Some(Pending::Create), Ok(Reply::Created { doc, heads })) => {
                            self.report.docs_created += 1;
                            for h in heads {
                                self.acked.push((node, doc, h));
                            }
                        }
                        (
                            Some(Pending::Change(doc)),
                            Ok(Reply::Changed {
                                change: Some(h), ..
                            }),
                        ) => {
                            self.report.acked_changes += 1;
                            self.acked.push((node, doc, h));
                        }
                        (Some(Pending::Delete(doc)), Ok(Reply::Done)) => {
                            self.report.deletes += 1;
                            self.deleted.insert(doc);
                        }
                        _ => {}
                    }
                }
                Output::Event(event) => match event {
                    Event::ConflictDetected { .. } => self.report.conflicts += 1,
                    Event::DocumentDamaged { doc, reason } => self
                        .damaged
                        .push(format!("peer {node} doc {doc}: {reason}")),
                    _ => {}
                },
            }
        }
    }

    /// A sync message carries its sender's heads, and peers take them as proof that
    /// the sender holds those changes (cloud receipts): each must be in the sender's
    /// durable storage already, as the last completed write of the document recorded.
    fn check_durable_heads(&mut self, node: usize, bytes: &[u8]) {
        let Ok(Message::Sync {
            document_id, data, ..
        }) = Message::decode(bytes, usize::MAX)
        else {
            return;
        };
        let Ok(message) = automerge::sync::Message::decode(&data) else {
            return;
        };
        if message.heads.is_empty() {
            return;
        }
        let stored = self.nodes[node]
            .store
            .get(&persist::meta_key(&document_id))
            .ok()
            .flatten()
            .and_then(|bytes| persist::DocumentMeta::decode(&bytes).ok())
            .map(|meta| meta.heads)
            .unwrap_or_default();
        let mut missing: Vec<String> = message
            .heads
            .iter()
            .map(ChangeHash::to_string)
            .filter(|h| !stored.contains(h))
            .collect();
        // A record written on its own may name older heads than the chunks it sits
        // beside: what counts is whether the stored chunks hold the change.
        if !missing.is_empty()
            && let Ok(chunks) = self.nodes[node]
                .store
                .range(&persist::document_prefix(&document_id))
        {
            let loaded = persist::load_document(chunks);
            missing.retain(|h| {
                h.parse::<ChangeHash>()
                    .map_or(true, |h| loaded.doc.get_change_by_hash(&h).is_none())
            });
        }
        if !missing.is_empty() {
            self.undurable.push(format!(
                "peer {node} revealed heads {missing:?} of doc {document_id} before storing them (stored: {stored:?})"
            ));
        }
    }

    fn send(&mut self, conn: ConnectionId, bytes: Vec<u8>) {
        let Some(&(_, peer, peer_conn)) = self.conn_index.get(&conn) else {
            return;
        };
        let incarnation = self.nodes[peer].incarnation;
        let earliest = self.last_delivery.get(&peer_conn).copied().unwrap_or(0);
        let at = (self.now + self.rng.random_range(0..=5)).max(earliest);
        self.last_delivery.insert(peer_conn, at);
        self.schedule(
            at,
            Ev::Deliver {
                node: peer,
                incarnation,
                conn: peer_conn,
                bytes,
            },
        );
    }

    fn can_connect(&self, a: usize, b: usize) -> bool {
        self.nodes[a].repo.is_some()
            && self.nodes[b].repo.is_some()
            && (self.island.is_empty() || self.island.contains(&a) == self.island.contains(&b))
    }

    fn ensure_connections(&mut self, always: bool) {
        let n = self.nodes.len();
        for a in 0..n {
            for b in (a + 1)..n {
                if self.links.contains_key(&(a, b)) || !self.can_connect(a, b) {
                    continue;
                }
                // Reconnection is not instant: each step it happens with some chance.
                if !always && self.rng.random_range(0..4) != 0 {
                    continue;
                }
                self.open_link(a, b);
            }
        }
    }

    fn open_link(&mut self, a: usize, b: usize) {
        let ca = ConnectionId(self.next_conn);
        let cb = ConnectionId(self.next_conn + 1);
        self.next_conn += 2;
        let delay = self.rng.random_range(0..=3);
        self.links.insert(
            (a, b),
            Link {
                conns: [ca, cb],
                opened_at: self.now + delay,
            },
        );
        self.conn_index.insert(ca, (a, b, cb));
        self.conn_index.insert(cb, (b, a, ca));
        let (ia, ib) = (self.nodes[a].incarnation, self.nodes[b].incarnation);
        // The dialler is chosen at random: both roles get exercised.
        let a_dials = self.rng.random_bool(0.5);
        self.schedule(
            self.now + delay,
            Ev::Opened {
                node: a,
                incarnation: ia,
                conn: ca,
                initiator: a_dials,
            },
        );
        self.schedule(
            self.now + delay,
            Ev::Opened {
                node: b,
                incarnation: ib,
                conn: cb,
                initiator: !a_dials,
            },
        );
    }

    /// Closes a link. Frames in flight are dropped, or (when `keep_in_flight`) still
    /// delivered later, to a connection id the engine has already forgotten.
    fn close_link(&mut self, pair: (usize, usize), keep_in_flight: bool) {
        let Some(link) = self.links.remove(&pair) else {
            return;
        };
        for conn in link.conns {
            self.conn_index.remove(&conn);
        }
        if !keep_in_flight {
            self.events.retain(
                |_, ev| !matches!(ev, Ev::Deliver { conn, .. } if link.conns.contains(conn)),
            );
        } else {
            // Push in-flight frames past the close so they arrive stale.
            let stale: Vec<(u64, u64)> = self
                .events
                .iter()
                .filter(
                    |(_, ev)| matches!(ev, Ev::Deliver { conn, .. } if link.conns.contains(conn)),
                )
                .map(|(k, _)| *k)
                .collect();
            for key in stale {
                if let Some(ev) = self.events.remove(&key) {
                    let late = self.now + 10 + self.rng.random_range(0..=200);
                    self.schedule(late, ev);
                }
            }
        }
        let at = (self.now + self.rng.random_range(0..=5)).max(link.opened_at);
        for (node, conn) in [(pair.0, link.conns[0]), (pair.1, link.conns[1])] {
            let incarnation = self.nodes[node].incarnation;
            self.schedule(
                at,
                Ev::Closed {
                    node,
                    incarnation,
                    conn,
                },
            );
        }
    }

    fn random_action(&mut self) {
        let roll = self.rng.random_range(0..100u32);
        let c = &self.config;
        let (crash, reset, partition) = (c.crash_percent, c.reset_percent, c.partition_percent);
        if roll < crash {
            let alive: Vec<usize> = (0..self.nodes.len())
                .filter(|n| self.nodes[*n].repo.is_some())
                .collect();
            if alive.len() > 1 {
                let node = alive[self.rng.random_range(0..alive.len())];
                self.crash(node);
            }
        } else if roll < crash + reset {
            let pairs: Vec<(usize, usize)> = self.links.keys().copied().collect();
            if !pairs.is_empty() {
                let pair = pairs[self.rng.random_range(0..pairs.len())];
                let keep = self.rng.random_bool(0.4);
                self.report.resets += 1;
                self.close_link(pair, keep);
            }
        } else if roll < crash + reset + partition {
            self.report.partitions += 1;
            self.island.clear();
            if self.rng.random_bool(0.7) {
                for node in 0..self.nodes.len() {
                    if self.rng.random_bool(0.4) {
                        self.island.insert(node);
                    }
                }
            }
            let pairs: Vec<(usize, usize)> = self.links.keys().copied().collect();
            for (a, b) in pairs {
                if !self.can_connect(a, b) {
                    self.close_link((a, b), false);
                }
            }
        } else if self.config.cloud.is_some() && self.rng.random_range(0..40) == 0 {
            // Only seeds with a cloud draw this, so the others replay as they always did.
            self.find();
        } else {
            self.local_edit();
        }
    }

    /// A peer asks its peers for a document by id: one another peer holds (it may
    /// have it already), or one nobody has.
    fn find(&mut self) {
        let node = self.rng.random_range(0..self.nodes.len());
        let Some(repo) = self.nodes[node].repo.as_ref().filter(|r| r.is_ready()) else {
            return;
        };
        let elsewhere: Vec<DocumentId> = self
            .nodes
            .iter()
            .filter_map(|n| n.repo.as_ref())
            .flat_map(|r| r.catalog().keys().copied())
            .filter(|d| !repo.catalog().contains_key(d))
            .collect();
        let doc = if !elsewhere.is_empty() && self.rng.random_bool(0.8) {
            elsewhere[self.rng.random_range(0..elsewhere.len())]
        } else {
            DocumentId::random(&mut self.rng)
        };
        self.report.finds += 1;
        self.command(node, Command::Find { doc }, Pending::Find);
    }

    fn command(&mut self, node: usize, command: Command, pending: Pending) {
        let id = CommandId(self.nodes[node].next_command);
        self.nodes[node].next_command += 1;
        self.nodes[node].pending.insert(id, pending);
        self.feed(node, Input::Command { id, command });
    }

    fn local_edit(&mut self) {
        let node = self.rng.random_range(0..self.nodes.len());
        let Some(repo) = self.nodes[node].repo.as_ref() else {
            return;
        };
        if !repo.is_ready() {
            return;
        }
        let live: Vec<DocumentId> = repo
            .catalog()
            .iter()
            .filter(|(_, m)| !m.deleted)
            .map(|(id, _)| *id)
            .collect();
        let created = self.report.docs_created + self.pending_creates();
        if live.is_empty() || (created < self.config.docs && self.rng.random_bool(0.25)) {
            if created < self.config.docs {
                let initial = serde_json::json!({"title": format!("doc by {node}"), "n": 0});
                let priority = self.rng.random_range(0..3);
                self.command(
                    node,
                    Command::Create {
                        initial: Some(initial),
                        priority,
                        title: None,
                    },
                    Pending::Create,
                );
            }
            return;
        }
        let doc = live[self.rng.random_range(0..live.len())];
        if self.rng.random_range(0..200) == 0 {
            self.command(node, Command::Delete { doc }, Pending::Delete(doc));
            return;
        }
        let key = ["a", "b", "c", "title"][self.rng.random_range(0..4)];
        let value: i64 = self.rng.random_range(0..1000);
        let position: usize = self.rng.random_range(0..1000);
        let kind = self.rng.random_range(0..4);
        let request = ChangeRequest::Func(Box::new(move |tx| {
            match kind {
                0 | 1 => {
                    tx.put(ROOT, key, value)?;
                }
                2 => {
                    let text = match tx.get(ROOT, "notes")? {
                        Some((automerge::Value::Object(ObjType::Text), id)) => id,
                        _ => tx.put_object(ROOT, "notes", ObjType::Text)?,
                    };
                    let at = position % (tx.length(&text) + 1);
                    tx.splice_text(&text, at, 0, "x")?;
                }
                _ => {
                    let list = match tx.get(ROOT, "items")? {
                        Some((automerge::Value::Object(ObjType::List), id)) => id,
                        _ => tx.put_object(ROOT, "items", ObjType::List)?,
                    };
                    let at = position % (tx.length(&list) + 1);
                    tx.insert(&list, at, value)?;
                }
            }
            Ok(())
        }));
        self.command(
            node,
            Command::Change {
                doc,
                request,
                message: None,
            },
            Pending::Change(doc),
        );
    }

    fn pending_creates(&self) -> usize {
        self.nodes
            .iter()
            .flat_map(|n| n.pending.values())
            .filter(|p| matches!(p, Pending::Create))
            .count()
    }

    /// The convergence property.
    fn check(&self) -> Result<(), String> {
        // First, durability on its own: every acknowledged change is in its origin's
        // store (unless its document was deleted somewhere). `LOST:` marks the one
        // failure no seed may ever have.
        let deleted_anywhere: BTreeSet<DocumentId> = self
            .nodes
            .iter()
            .filter_map(|n| n.repo.as_ref())
            .flat_map(|r| {
                r.catalog()
                    .iter()
                    .filter(|(_, m)| m.deleted)
                    .map(|(id, _)| *id)
            })
            .chain(self.deleted.iter().copied())
            .collect();
        for (origin, doc, hash) in &self.acked {
            if deleted_anywhere.contains(doc) {
                continue;
            }
            let stored = self.nodes[*origin]
                .store
                .range(&persist::document_prefix(doc))
                .map_err(|e| e.to_string())?;
            if persist::load_document(stored)
                .doc
                .get_change_by_hash(hash)
                .is_none()
            {
                return Err(format!(
                    "LOST: change {hash} acknowledged on peer {origin} for doc {doc} is not in its store"
                ));
            }
        }
        if let Some(damage) = self.damaged.first() {
            return Err(format!("damage reported: {damage}"));
        }
        if let Some(leak) = self.undurable.first() {
            return Err(leak.clone());
        }
        let mut all_docs = BTreeSet::new();
        for node in &self.nodes {
            if let Some(repo) = &node.repo {
                all_docs.extend(repo.catalog().keys().copied());
            }
        }
        let mut deleted = self.deleted.clone();
        for node in &self.nodes {
            if let Some(repo) = &node.repo {
                deleted.extend(
                    repo.catalog()
                        .iter()
                        .filter(|(_, m)| m.deleted)
                        .map(|(id, _)| *id),
                );
            }
        }
        for doc in &all_docs {
            let mut reference: Option<(Vec<ChangeHash>, serde_json::Value)> = None;
            for (i, node) in self.nodes.iter().enumerate() {
                let Some(repo) = &node.repo else {
                    return Err(format!("peer {i} is down at the end"));
                };
                let meta = repo.catalog().get(doc);
                let stored = node
                    .store
                    .range(&persist::document_prefix(doc))
                    .map_err(|e| e.to_string())?;
                if deleted.contains(doc) {
                    match meta {
                        Some(m) if m.deleted => {}
                        _ => return Err(format!("deleted document {doc} is live on peer {i}")),
                    }
                    let left: Vec<String> = stored
                        .iter()
                        .filter(|(k, _)| {
                            k.components().get(1).map(String::as_str) != Some(persist::SYNC_STATE)
                        })
                        .map(|(k, _)| k.to_string())
                        .collect();
                    if !left.is_empty() {
                        return Err(format!(
                            "deleted document {doc} still has data on peer {i}: {left:?}"
                        ));
                    }
                    continue;
                }
                let Some(meta) = meta else {
                    let holders: Vec<String> = self
                        .nodes
                        .iter()
                        .enumerate()
                        .filter_map(|(j, n)| {
                            let m = n.repo.as_ref()?.catalog().get(doc)?;
                            Some(format!("peer {j}: {m:?}"))
                        })
                        .collect();
                    return Err(format!(
                        "document {doc} missing on peer {i}; held by {holders:?}"
                    ));
                };
                let loaded = persist::load_document(stored);
                let mut heads = loaded.doc.get_heads();
                heads.sort();
                let mut meta_heads = meta.change_heads();
                meta_heads.sort();
                if meta_heads != heads {
                    return Err(format!(
                        "peer {i} doc {doc}: catalog heads differ from stored heads"
                    ));
                }
                if let Some(in_memory) = repo.document(doc) {
                    let mut h = in_memory.get_heads();
                    h.sort();
                    if h != heads {
                        return Err(format!("peer {i} doc {doc}: memory and storage differ"));
                    }
                }
                let json = model::to_json(&loaded.doc);
                match &reference {
                    None => reference = Some((heads, json)),
                    Some((rh, rj)) => {
                        if *rh != heads {
                            return Err(format!(
                                "doc {doc}: peer {i} has heads {heads:?}, peer 0.. has {rh:?}"
                            ));
                        }
                        if *rj != json {
                            return Err(format!("doc {doc}: peer {i} JSON {json} != {rj}"));
                        }
                    }
                }
            }
        }
        // Every acknowledged change is present everywhere (unless its doc was deleted).
        let mut by_doc: BTreeMap<DocumentId, Vec<(usize, ChangeHash)>> = BTreeMap::new();
        for (origin, doc, hash) in &self.acked {
            if !deleted.contains(doc) {
                by_doc.entry(*doc).or_default().push((*origin, *hash));
            }
        }
        for (doc, changes) in &by_doc {
            for (i, node) in self.nodes.iter().enumerate() {
                let stored = node
                    .store
                    .range(&persist::document_prefix(doc))
                    .map_err(|e| e.to_string())?;
                let loaded = persist::load_document(stored);
                for (origin, hash) in changes {
                    if loaded.doc.get_change_by_hash(hash).is_none() {
                        return Err(format!(
                            "change {hash} acknowledged on peer {origin} for doc {doc} is missing on peer {i}"
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}
