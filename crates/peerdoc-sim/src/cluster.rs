//! A small deterministic cluster of engines for targeted tests: storage runs inline and
//! in order, frames are delivered in FIFO order when [`Cluster::run`] is called, and
//! every frame is counted per connection.

use std::collections::{BTreeMap, VecDeque};

use peerdoc_core::repo::{
    Command, CommandId, Event, Input, Output, Reply, Repo, RepoConfig, RepoError, StorageOp,
    StorageResult,
};
use peerdoc_core::{ConnectionId, DocumentId, MemoryStorage, PeerId, Storage, StorageKey};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// One engine and its store.
#[derive(Debug)]
pub struct ClusterNode {
    /// The engine.
    pub repo: Repo,
    /// Its durable store.
    pub store: MemoryStorage,
    config: RepoConfig,
}

/// Storage failures the cluster injects, drawn from the cluster's seeded rng
/// ([`Cluster::faults`]); all zero (the default) injects nothing and draws nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StorageFaults {
    /// Writes that fail with an I/O error, per thousand.
    pub write_errors: u32,
    /// Reads (`Load`, `LoadRange`) that fail with an I/O error, per thousand.
    pub read_errors: u32,
    /// Every write fails with "storage full" (nothing is written); reads work.
    pub full: bool,
}

impl StorageFaults {
    fn any(&self) -> bool {
        self.write_errors > 0 || self.read_errors > 0 || self.full
    }
}

/// Frames and bytes sent on one connection, in one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Frames.
    pub messages: u64,
    /// Bytes.
    pub bytes: u64,
}

/// A frame one node sent.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The sender.
    pub from: usize,
    /// The sender's connection.
    pub conn: ConnectionId,
    /// The message type (`"?"` if it did not decode).
    pub kind: String,
    /// The document it is about, if any.
    pub doc: Option<DocumentId>,
    /// Encoded size.
    pub size: usize,
}

/// A set of engines wired together in memory.
#[derive(Debug)]
pub struct Cluster {
    /// The engines.
    pub nodes: Vec<ClusterNode>,
    rng: ChaCha8Rng,
    /// Simulated time in ms; advance it with [`Cluster::advance`].
    pub now_ms: u64,
    /// connection → (owning node, peer node, peer's connection).
    links: BTreeMap<ConnectionId, (usize, usize, ConnectionId)>,
    in_flight: VecDeque<(usize, ConnectionId, Vec<u8>)>,
    next_conn: u64,
    next_command: u64,
    /// Every event emitted, with the node that emitted it.
    pub events: Vec<(usize, Event)>,
    /// Every frame sent.
    pub frames: Vec<Frame>,
    replies: BTreeMap<CommandId, Result<Reply, RepoError>>,
    /// Disconnects the engines asked for: (node, connection, reason, misbehaved).
    pub disconnects: Vec<(usize, ConnectionId, String, bool)>,
    /// Frames sent on raw connections ([`Cluster::connect_raw`]), in order, for a test
    /// playing the other end to drain.
    pub raw_out: VecDeque<(ConnectionId, Vec<u8>)>,
    /// While set, storage operations wait in order until [`Cluster::release_storage`].
    pub hold_storage: bool,
    held: VecDeque<(usize, peerdoc_core::repo::StorageOpId, StorageOp)>,
    /// Storage failures to inject (none by default).
    pub faults: StorageFaults,
    /// Storage operations that failed by injection so far.
    pub injected_failures: u64,
    /// Connections whose incoming frames are lost (`Cluster::silence`).
    silenced: std::collections::BTreeSet<ConnectionId>,
}

impl Cluster {
    /// `n` fresh engines; `configure` adjusts each one's config.
    pub fn new(n: usize, seed: u64, configure: impl Fn(&mut RepoConfig)) -> Self {
        Self::new_per_node(n, seed, |_, config| configure(config))
    }

    /// `n` fresh engines; `configure` adjusts each one's config, given the node's index
    /// (e.g. a peer id and actor prefix per device).
    pub fn new_per_node(n: usize, seed: u64, configure: impl Fn(usize, &mut RepoConfig)) -> Self {
        let stores = (0..n).map(|_| MemoryStorage::new()).collect();
        Self::build(stores, seed, configure)
    }

    /// Engines over the given stores (e.g. prepared copies).
    pub fn with_stores(
        stores: Vec<MemoryStorage>,
        seed: u64,
        configure: impl Fn(&mut RepoConfig),
    ) -> Self {
        Self::build(stores, seed, |_, config| configure(config))
    }

    fn build(
        stores: Vec<MemoryStorage>,
        seed: u64,
        configure: impl Fn(usize, &mut RepoConfig),
    ) -> Self {
        let nodes = stores
            .into_iter()
            .enumerate()
            .map(|(i, store)| {
                let mut config = RepoConfig::new(PeerId::new(format!("node-{i}")));
                configure(i, &mut config);
                ClusterNode {
                    repo: Repo::new(config.clone()),
                    store,
                    config,
                }
            })
            .collect();
        let mut cluster = Self {
            nodes,
            rng: ChaCha8Rng::seed_from_u64(seed),
            now_ms: 1_700_000_000_000,
            links: BTreeMap::new(),
            in_flight: VecDeque::new(),
            next_conn: 0,
            next_command: 0,
            events: Vec::new(),
            frames: Vec::new(),
            replies: BTreeMap::new(),
            disconnects: Vec::new(),
            raw_out: VecDeque::new(),
            hold_storage: false,
            held: VecDeque::new(),
            faults: StorageFaults::default(),
            injected_failures: 0,
            silenced: Default::default(),
        };
        for i in 0..cluster.nodes.len() {
            cluster.feed(i, Input::Start);
        }
        cluster
    }

    /// Moves the clock forward.
    pub fn advance(&mut self, ms: u64) {
        self.now_ms += ms;
    }

    /// Feeds one input to node `i` and performs its outputs (storage inline, frames queued).
    pub fn feed(&mut self, i: usize, input: Input) {
        let mut inputs = VecDeque::from([input]);
        while let Some(input) = inputs.pop_front() {
            let outputs = self.nodes[i].repo.handle(self.now_ms, &mut self.rng, input);
            for output in outputs {
                match output {
                    Output::Storage { id, op } if self.hold_storage => {
                        self.held.push_back((i, id, op));
                    }
                    Output::Storage { id, op } => {
                        let result = self.execute(i, op);
                        inputs.push_back(Input::StorageCompleted { id, result });
                    }
                    Output::Send { conn, bytes } => {
                        let decoded = peerdoc_core::wire::Message::decode(&bytes, usize::MAX);
                        let (kind, doc) = match &decoded {
                            Ok(m) => (m.type_name().to_string(), m.document_id().copied()),
                            Err(_) => ("?".to_string(), None),
                        };
                        self.frames.push(Frame {
                            from: i,
                            conn,
                            kind,
                            doc,
                            size: bytes.len(),
                        });
                        if let Some(&(_, peer, peer_conn)) = self.links.get(&conn)
                            && !self.silenced.contains(&peer_conn)
                        {
                            self.in_flight.push_back((peer, peer_conn, bytes));
                        } else {
                            self.raw_out.push_back((conn, bytes));
                        }
                    }
                    Output::Disconnect {
                        conn,
                        reason,
                        misbehaved,
                    } => {
                        self.disconnects.push((i, conn, reason, misbehaved));
                        self.drop_link(conn);
                    }
                    Output::Reply { id, result } => {
                        self.replies.insert(id, result);
                    }
                    Output::Event(event) => self.events.push((i, event)),
                    Output::ScheduleTick { .. } => {}
                }
            }
        }
    }

    /// Runs every held storage operation, in order, and stops holding.
    pub fn release_storage(&mut self) {
        self.hold_storage = false;
        while let Some((i, id, op)) = self.held.pop_front() {
            let result = self.execute(i, op);
            self.feed(i, Input::StorageCompleted { id, result });
        }
    }

    /// Runs the oldest held storage operation (with [`Cluster::faults`] as they are now)
    /// and performs what follows from it; what that issues is held in turn. Says whether
    /// there was one.
    pub fn release_storage_op(&mut self) -> bool {
        let Some((i, id, op)) = self.held.pop_front() else {
            return false;
        };
        let result = self.execute(i, op);
        self.feed(i, Input::StorageCompleted { id, result });
        true
    }

    fn drop_link(&mut self, conn: ConnectionId) {
        if let Some((_, peer, peer_conn)) = self.links.remove(&conn) {
            self.links.remove(&peer_conn);
            self.in_flight
                .retain(|(_, c, _)| *c != conn && *c != peer_conn);
            self.feed(peer, Input::ConnectionClosed { conn: peer_conn });
        }
    }

    /// Runs a command on node `i` until it is answered (frames stay queued).
    pub fn command(&mut self, i: usize, command: Command) -> Result<Reply, RepoError> {
        let id = self.submit(i, command);
        self.take_reply(id)
            .unwrap_or_else(|| Err(RepoError::Busy("no reply".into())))
    }

    /// Feeds a command to node `i` without waiting for its answer; see
    /// [`Cluster::take_reply`].
    pub fn submit(&mut self, i: usize, command: Command) -> CommandId {
        let id = CommandId(self.next_command);
        self.next_command += 1;
        self.feed(i, Input::Command { id, command });
        id
    }

    /// The answer to a submitted command, once there is one.
    pub fn take_reply(&mut self, id: CommandId) -> Option<Result<Reply, RepoError>> {
        self.replies.remove(&id)
    }

    /// Creates a document on node `i` from JSON; panics on failure (test helper).
    pub fn create(&mut self, i: usize, json: serde_json::Value, priority: i32) -> DocumentId {
        match self.command(
            i,
            Command::Create {
                initial: Some(json),
                priority,
                title: None,
            },
        ) {
            Ok(Reply::Created { doc, .. }) => doc,
            other => panic!("create failed: {other:?}"),
        }
    }

    /// Reads a document on node `i` as JSON (`None` when absent or deleted).
    pub fn json(&mut self, i: usize, doc: DocumentId) -> Option<serde_json::Value> {
        match self.command(i, Command::Read { doc, heads: None }) {
            Ok(Reply::Json { value, .. }) => Some(value),
            _ => None,
        }
    }

    /// Connects `a` (dialler) to `b`; returns (a's connection, b's connection).
    pub fn connect(&mut self, a: usize, b: usize) -> (ConnectionId, ConnectionId) {
        let ca = ConnectionId(self.next_conn);
        let cb = ConnectionId(self.next_conn + 1);
        self.next_conn += 2;
        self.links.insert(ca, (a, b, cb));
        self.links.insert(cb, (b, a, ca));
        self.feed(
            b,
            Input::ConnectionOpened {
                conn: cb,
                initiator: false,
            },
        );
        self.feed(
            a,
            Input::ConnectionOpened {
                conn: ca,
                initiator: true,
            },
        );
        (ca, cb)
    }

    /// Opens a raw connection to node `b` with no engine on the other end: frames the
    /// node sends are recorded in [`Cluster::frames`]; inject frames with [`Cluster::inject`].
    pub fn connect_raw(&mut self, b: usize, initiator: bool) -> ConnectionId {
        let cb = ConnectionId(self.next_conn);
        self.next_conn += 1;
        self.feed(
            b,
            Input::ConnectionOpened {
                conn: cb,
                initiator,
            },
        );
        cb
    }

    /// Delivers raw bytes to node `b` on connection `conn`.
    pub fn inject(&mut self, b: usize, conn: ConnectionId, bytes: Vec<u8>) {
        self.feed(b, Input::MessageReceived { conn, bytes });
    }

    /// Closes a connection (from `conn`'s owner's side; the peer is told too).
    pub fn disconnect(&mut self, conn: ConnectionId) {
        if let Some(&(owner, _, _)) = self.links.get(&conn) {
            self.feed(owner, Input::ConnectionClosed { conn });
            self.drop_link(conn);
        }
    }

    /// Delivers the oldest frame in flight, if any; returns the node that received it.
    /// A driver that reacts to events between frames (say, to a membership change)
    /// steps with this instead of [`Cluster::run`].
    pub fn deliver_one(&mut self) -> Option<usize> {
        let (node, conn, bytes) = self.in_flight.pop_front()?;
        self.feed(node, Input::MessageReceived { conn, bytes });
        Some(node)
    }

    /// From now on, frames to the owner of `conn` on it are lost, those in flight too:
    /// the peer went silent mid-transfer, its connection still open.
    pub fn silence(&mut self, conn: ConnectionId) {
        self.silenced.insert(conn);
        self.in_flight.retain(|(_, c, _)| *c != conn);
    }

    /// Frames sent and not yet delivered.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Node `i`'s open connections to other nodes: (its connection, the peer node).
    pub fn connections_of(&self, i: usize) -> Vec<(ConnectionId, usize)> {
        self.links
            .iter()
            .filter(|(_, (owner, _, _))| *owner == i)
            .map(|(conn, (_, peer, _))| (*conn, *peer))
            .collect()
    }

    /// Delivers frames until none are in flight (bounded to catch livelock).
    pub fn run(&mut self) {
        let mut delivered = 0u64;
        while let Some((node, conn, bytes)) = self.in_flight.pop_front() {
            self.feed(node, Input::MessageReceived { conn, bytes });
            delivered += 1;
            assert!(delivered < 50_000_000, "frames never stopped flowing");
        }
    }

    /// Fires every node's tick (persists dirty sync state, trims memory).
    pub fn tick(&mut self) {
        for i in 0..self.nodes.len() {
            self.feed(i, Input::Tick);
        }
    }

    /// Crashes node `i` (drops its engine and connections) and restarts it from storage.
    pub fn restart(&mut self, i: usize) {
        let conns: Vec<ConnectionId> = self
            .links
            .iter()
            .filter(|(_, (owner, _, _))| *owner == i)
            .map(|(c, _)| *c)
            .collect();
        for conn in conns {
            self.drop_link(conn);
        }
        let config = self.nodes[i].config.clone();
        self.nodes[i].repo = Repo::new(config);
        self.feed(i, Input::Start);
    }

    /// Frames sent on a connection pair, both directions.
    pub fn traffic(&self, conns: (ConnectionId, ConnectionId)) -> Traffic {
        let mut t = Traffic::default();
        for frame in &self.frames {
            if frame.conn == conns.0 || frame.conn == conns.1 {
                t.messages += 1;
                t.bytes += frame.size as u64;
            }
        }
        t
    }

    /// Runs `op` on node `i`'s store, or fails it as [`Cluster::faults`] says.
    fn execute(
        &mut self,
        i: usize,
        op: StorageOp,
    ) -> Result<StorageResult, peerdoc_core::StorageError> {
        if self.faults.any() {
            use rand::Rng as _;
            let write = matches!(op, StorageOp::Write(_));
            let per_mille = if write {
                self.faults.write_errors
            } else {
                self.faults.read_errors
            };
            if write && self.faults.full {
                self.injected_failures += 1;
                return Err(peerdoc_core::StorageError::Full(
                    "injected: disk full".into(),
                ));
            }
            if per_mille > 0 && self.rng.random_range(0..1000) < per_mille {
                self.injected_failures += 1;
                return Err(peerdoc_core::StorageError::Io("injected: EIO".into()));
            }
        }
        execute(&self.nodes[i].store, op)
    }

    /// A copy of node `i`'s store without its storage id, so a second engine started
    /// on it is a different peer holding the same documents.
    pub fn clone_store(&self, i: usize) -> MemoryStorage {
        let mut entries = self.nodes[i].store.snapshot();
        entries.remove(&StorageKey::new(["storage-adapter-id"]));
        MemoryStorage::from_entries(entries)
    }
}

fn execute(
    store: &MemoryStorage,
    op: StorageOp,
) -> Result<StorageResult, peerdoc_core::StorageError> {
    match op {
        StorageOp::LoadRange { prefix } => store.range(&prefix).map(StorageResult::Range),
        StorageOp::Load { key } => store.get(&key).map(StorageResult::Value),
        StorageOp::Write(batch) => store.write(batch).map(|()| StorageResult::Written),
    }
}
