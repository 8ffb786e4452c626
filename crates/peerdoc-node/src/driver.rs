//! The driver task: owns the [`Repo`] and performs its outputs.
//!
//! Longer than our ~800-line rule: one `select!` loop and the performing of every
//! engine output share the driver's state (connection maps, backlogs, attached
//! transports, access policy); split, each part would need all of it. What stands
//! apart already lives beside it: departures (`departed.rs`), announcements
//! (`announce.rs`), attached transports (`attach.rs`), the storage thread
//! (`storage_worker.rs`), other cloud nodes' change notices (`shared_store.rs`).
//!
//! One `tokio::select!` loop takes, in priority order, storage completions, requests
//! from [`NodeHandle`](crate::NodeHandle)s, network events and the engine's tick timer.
//! Storage runs on the storage thread ([`crate::storage_worker`]); everything else the
//! engine asks for (frames, disconnects, replies, events) is done here, in the order it
//! was emitted.
//!
//! Backpressure: while the storage queue is full, the driver stops taking requests and
//! network events (completions still flow, and free the queue). Requests also wait
//! while `max_pending_commands` commands are unanswered.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::mpsc::TrySendError;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::stream::{self, BoxStream, SelectAll, StreamExt as _};
use peerdoc_core::repo::{
    ChangeOrigin, Command, CommandId, ConnectionInfo, Event, Input, Output, PeerAccess, Reply, Repo,
};
use peerdoc_core::{ConnectionId, DocumentId, StorageError, StorageId};
use peerdoc_net::{Multiaddr, NetError, NetEvent, NetHandle, PeerId, SessionId};
use rand::rngs::StdRng;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;

use crate::NodeError;
use crate::announce::Announcement;
use crate::attach::{self, AttachRole, AttachedConnection, AttachedSlot};
use crate::departed::Departures;
use crate::metrics::Metrics;
use crate::patches::{MAX_EVENT_PATCHES, patches_to_json};
use crate::shared_store::StoreChanges;
use crate::storage_worker::{Completion, StorageJob, StorageWorker};
use crate::types::{
    DocumentSummary, DocumentSync, NodeEvent, Origin, PeerDocStatus, changed_paths,
};

/// How long a peer's frames wait before the driver offers them to the transport again
/// after its queue was full.
const BACKLOG_RETRY: Duration = Duration::from_millis(5);

/// Announcements waiting for the publisher task; beyond this they are dropped (gossip is
/// best-effort: the sync streams carry every change anyway).
const ANNOUNCE_QUEUE_LEN: usize = 64;

/// Peers whose last failed connection attempt is remembered (for "seen, not connected").
const MAX_FAILURES: usize = 256;

/// Malformed gossip messages tolerated from one peer before it is banned.
const MAX_GOSSIP_STRIKES: u32 = 3;

/// Peers whose malformed gossip we count at once; more and the counts start over.
const MAX_GOSSIP_OFFENDERS: usize = 1024;

/// What a handle asks the driver.
#[derive(Debug)]
pub(crate) enum Request {
    /// Run an engine command; the reply comes once it is answered (durable for writes).
    Command {
        command: Command,
        reply: oneshot::Sender<Result<Reply, NodeError>>,
    },
    /// The catalog.
    List {
        reply: oneshot::Sender<Vec<DocumentSummary>>,
    },
    /// Counters and connections.
    Snapshot { reply: oneshot::Sender<Snapshot> },
    /// Per-document sync state with every connected peer (tombstones left out).
    DocSync {
        reply: oneshot::Sender<Vec<DocumentSync>>,
    },
    /// Attach a connection over a transport the node does not own.
    Attach {
        role: AttachRole,
        label: String,
        reply: oneshot::Sender<AttachedConnection>,
    },
    /// Protect a document (see [`crate::NodeHandle::protect_document`]).
    Protect {
        doc: DocumentId,
        reply: oneshot::Sender<()>,
    },
    /// Who may only read (see [`crate::NodeHandle::set_access`]).
    SetAccess {
        access: AccessPolicy,
        reply: oneshot::Sender<()>,
    },
    /// Stop; the reply comes once storage is flushed and closed.
    Shutdown {
        reply: oneshot::Sender<Result<(), NodeError>>,
    },
}

impl AccessPolicy {
    /// The engine access of a libp2p peer's connection.
    fn of(&self, peer: &PeerId) -> PeerAccess {
        if self.protected_only_peers.contains(peer) {
            PeerAccess::ProtectedOnly
        } else if self.read_only_peers.contains(peer) {
            PeerAccess::ReadOnly
        } else {
            PeerAccess::ReadWrite
        }
    }
}

/// Which connections may only read: the peers whose changes we never apply (a team's
/// viewers), and whether local apps (`NodeHandle::attach` responders) may only read
/// (this device is a viewer).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessPolicy {
    /// libp2p peers whose changes are never applied.
    pub read_only_peers: HashSet<PeerId>,
    /// libp2p peers with which only protected documents are synced, both ways (a device
    /// removed from the team, during the notice before its connections close).
    pub protected_only_peers: HashSet<PeerId>,
    /// Connections attached as [`AttachRole::Responder`] (apps on this device) are
    /// read-only too.
    pub local_apps_read_only: bool,
}

/// A frame from an attached connection's transport; `None` when its sender was dropped.
type AttachedInbound = (ConnectionId, Option<Bytes>);

/// Every attached connection's inbound frames, merged.
#[derive(Default)]
struct AttachedFrames(SelectAll<BoxStream<'static, AttachedInbound>>);

impl std::fmt::Debug for AttachedFrames {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttachedFrames")
            .field("streams", &self.0.len())
            .finish()
    }
}

/// The engine's side of [`crate::NodeStatus`].
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) storage_id: Option<StorageId>,
    pub(crate) documents: usize,
    pub(crate) deleted: usize,
    pub(crate) loaded: usize,
    pub(crate) evictions: u64,
    pub(crate) storage_in_flight: usize,
    pub(crate) connections: Vec<(PeerId, ConnectionInfo)>,
    pub(crate) failures: Vec<(PeerId, String, SystemTime)>,
    pub(crate) departed: Vec<(PeerId, crate::Departure)>,
}

/// The engine connection that currently carries a libp2p peer's sync stream.
///
/// Engine connection ids map one-to-one onto the transport's sessions: a frame the
/// engine addressed to `conn` goes out only on `session`, and is dropped once that
/// stream has ended, even if a new stream to the same peer is already open.
#[derive(Debug)]
struct PeerSlot {
    conn: ConnectionId,
    session: SessionId,
    /// False once the engine closed the connection while the stream stays open: the
    /// peer's frames are ignored until the transport reports it gone.
    attached: bool,
    /// Frames waiting for room in the transport's queue to this peer.
    backlog: VecDeque<Bytes>,
    /// The address of the connection the stream opened on.
    addr: Multiaddr,
}

/// Everything the driver needs besides the engine itself.
#[derive(Debug)]
pub(crate) struct DriverParts {
    pub(crate) requests: mpsc::Receiver<Request>,
    pub(crate) net: NetHandle,
    pub(crate) net_events: mpsc::Receiver<NetEvent>,
    pub(crate) storage: StorageWorker,
    pub(crate) events: broadcast::Sender<NodeEvent>,
    pub(crate) ready: oneshot::Sender<Result<(), NodeError>>,
    pub(crate) peer_backlog_len: usize,
    pub(crate) attached_queue_len: usize,
    pub(crate) max_pending_commands: usize,
    pub(crate) announce_changes: bool,
    pub(crate) metrics: Arc<Metrics>,
    /// Peers that left, as saved in the data directory (`departed.rs`).
    pub(crate) departed: Departures,
    /// What other cloud nodes on the same database commit (`shared_store.rs`).
    pub(crate) store_changes: StoreChanges,
}

/// The task state. See the [module docs](self).
#[derive(Debug)]
pub(crate) struct Driver {
    repo: Repo,
    rng: StdRng,
    requests: mpsc::Receiver<Request>,
    net: NetHandle,
    net_events: mpsc::Receiver<NetEvent>,
    net_open: bool,
    jobs: Option<std::sync::mpsc::SyncSender<StorageJob>>,
    completions: mpsc::Receiver<Vec<Completion>>,
    storage_closed: Option<oneshot::Receiver<Result<(), String>>>,
    /// Storage jobs waiting for room in the storage queue, in emission order.
    overflow: VecDeque<StorageJob>,
    /// Inputs produced while performing outputs, fed before anything else.
    inputs: VecDeque<Input>,
    pending: HashMap<CommandId, oneshot::Sender<Result<Reply, NodeError>>>,
    next_command: u64,
    next_conn: u64,
    peers: HashMap<PeerId, PeerSlot>,
    /// Every connection id whose libp2p peer is still known (for naming event origins).
    conns: HashMap<ConnectionId, PeerId>,
    /// Connections over transports the node does not own, by engine connection.
    attached: HashMap<ConnectionId, AttachedSlot>,
    /// Frames from every attached connection, each stream ending with `None`.
    attached_in: AttachedFrames,
    attached_queue_len: usize,
    events: broadcast::Sender<NodeEvent>,
    ready: Option<oneshot::Sender<Result<(), NodeError>>>,
    tick_at: Option<Instant>,
    retry_at: Option<Instant>,
    local: PeerId,
    peer_backlog_len: usize,
    max_pending_commands: usize,
    shutdown_waiters: Vec<oneshot::Sender<Result<(), NodeError>>>,
    /// Why the shutdown may have left acknowledged writes off the disk (`None`: it did not).
    unclean: Option<String>,
    /// Encoded announcements for the publisher task; `None` when announcing is off.
    announcements: Option<mpsc::Sender<Bytes>>,
    announcements_rx: Option<mpsc::Receiver<Bytes>>,
    /// Malformed gossip messages received per author.
    gossip_strikes: HashMap<PeerId, u32>,
    metrics: Arc<Metrics>,
    access: AccessPolicy,
    /// Why recent connection attempts with peers failed (bounded; cleared on connect).
    failures: HashMap<PeerId, (String, SystemTime)>,
    /// Attached connections whose role is `Responder` (local apps).
    local_apps: HashSet<ConnectionId>,
    /// Peers that left, with what they were known to have (`departed.rs`).
    departed: Departures,
    /// The latest encoding of `departed` for the writer task (`None` before any change).
    departed_saves: watch::Sender<Option<(std::path::PathBuf, Vec<u8>)>>,
    store_changes: StoreChanges,
}

/// Wall-clock time in ms, the engine's notion of `now`.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Far enough to never fire; used for disabled timer branches.
fn never() -> Instant {
    Instant::now() + Duration::from_secs(365 * 24 * 3600)
}

impl Driver {
    pub(crate) fn new(repo: Repo, rng: StdRng, parts: DriverParts) -> Self {
        let local = parts.net.local_peer_id();
        let (announcements, announcements_rx) = if parts.announce_changes {
            let (tx, rx) = mpsc::channel(ANNOUNCE_QUEUE_LEN);
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let (departed_saves, saves) = watch::channel(None);
        tokio::spawn(crate::departed::writer(saves));
        Self {
            departed: parts.departed,
            departed_saves,
            store_changes: parts.store_changes,
            announcements,
            announcements_rx,
            gossip_strikes: HashMap::new(),
            access: AccessPolicy::default(),
            failures: HashMap::new(),
            local_apps: HashSet::new(),
            repo,
            rng,
            requests: parts.requests,
            net: parts.net,
            net_events: parts.net_events,
            net_open: true,
            jobs: Some(parts.storage.jobs),
            completions: parts.storage.completions,
            storage_closed: Some(parts.storage.closed),
            overflow: VecDeque::new(),
            inputs: VecDeque::new(),
            pending: HashMap::new(),
            next_command: 0,
            next_conn: 0,
            peers: HashMap::new(),
            conns: HashMap::new(),
            attached: HashMap::new(),
            attached_in: AttachedFrames::default(),
            attached_queue_len: parts.attached_queue_len,
            events: parts.events,
            ready: Some(parts.ready),
            tick_at: None,
            retry_at: None,
            local,
            peer_backlog_len: parts.peer_backlog_len,
            max_pending_commands: parts.max_pending_commands,
            shutdown_waiters: Vec::new(),
            unclean: None,
            metrics: parts.metrics,
        }
    }

    /// Runs until a handle asks for shutdown or every handle is gone, then shuts down
    /// gracefully. `early` are network events received before the driver started.
    pub(crate) async fn run(mut self, early: Vec<NetEvent>) {
        if let Some(mut queue) = self.announcements_rx.take() {
            // Publishing waits for the network's event loop; the driver never does.
            let net = self.net.clone();
            tokio::spawn(async move {
                while let Some(bytes) = queue.recv().await {
                    match net.publish(bytes).await {
                        Ok(outcome) => tracing::trace!(?outcome, "announcement published"),
                        Err(NetError::EventLoopClosed) => break,
                        Err(error) => tracing::debug!(%error, "announcement not published"),
                    }
                }
            });
        }
        self.feed(Input::Start);
        for event in early {
            self.on_net_event(event);
        }
        loop {
            let intake = self.overflow.is_empty();
            let take_requests = intake && self.pending.len() < self.max_pending_commands;
            let tick_at = self.tick_at;
            let retry_at = self.retry_at;
            tokio::select! {
                biased;
                Some(group) = self.completions.recv() => self.on_completions(group),
                request = self.requests.recv(), if take_requests => match request {
                    Some(Request::Shutdown { reply }) => {
                        self.shutdown_waiters.push(reply);
                        break;
                    }
                    Some(request) => self.on_request(request),
                    // Every handle is gone: nobody can ask for anything any more.
                    None => break,
                },
                Some((conn, frame)) = self.attached_in.0.next(), if intake && !self.attached_in.0.is_empty() => {
                    self.on_attached_frame(conn, frame);
                }
                change = self.store_changes.rx.recv(), if intake && self.store_changes.open => match change {
                    Some(doc) => self.feed(Input::StorageChanged { doc }),
                    None => self.store_changes.open = false,
                },
                event = self.net_events.recv(), if intake && self.net_open => match event {
                    Some(event) => self.on_net_event(event),
                    None => {
                        tracing::error!("network event loop stopped; running without peers");
                        self.net_open = false;
                    }
                },
                () = tokio::time::sleep_until(tick_at.unwrap_or_else(never)), if intake && tick_at.is_some() => {
                    self.tick_at = None;
                    self.feed(Input::Tick);
                }
                () = tokio::time::sleep_until(retry_at.unwrap_or_else(never)), if retry_at.is_some() => {
                    self.retry_at = None;
                    self.flush_backlogs();
                }
            }
        }
        self.shutdown().await;
    }

    /// Stops taking commands, lets every storage operation finish (with a last tick
    /// that persists sync states and retries unsaved changes), stops the network, then
    /// closes the storage thread after its final flush.
    async fn shutdown(mut self) {
        tracing::info!(peer = %self.local, "node shutting down");
        self.requests.close();
        while let Ok(request) = self.requests.try_recv() {
            match request {
                Request::Shutdown { reply } => self.shutdown_waiters.push(reply),
                Request::Command { reply, .. } => {
                    let _ = reply.send(Err(NodeError::ShuttingDown));
                }
                // Dropping the reply tells the caller the node is shutting down.
                Request::Attach { .. } => {}
                other => self.on_request(other),
            }
        }
        if self.repo.is_ready() {
            self.feed(Input::Tick);
        }
        while self.repo.stats().storage_in_flight > 0 {
            match self.completions.recv().await {
                Some(group) => self.on_completions(group),
                None => {
                    tracing::error!("storage thread stopped with operations in flight");
                    self.unclean = Some("the storage thread stopped with writes in flight".into());
                    break;
                }
            }
        }
        // Commands still unanswered (none, unless storage died) learn they never ran.
        for (_, reply) in self.pending.drain() {
            let _ = reply.send(Err(NodeError::ShuttingDown));
        }
        // The peers still connected are about to be left: after a restart they are
        // listed with what they had now, until they connect again.
        let connected: Vec<(PeerId, ConnectionId, Multiaddr)> = self
            .peers
            .iter()
            .filter(|(_, slot)| slot.attached)
            .map(|(peer, slot)| (*peer, slot.conn, slot.addr.clone()))
            .collect();
        for (peer, conn, addr) in connected {
            self.record_departure(peer, conn, addr);
        }
        if let Some((path, bytes)) = self.departed.encoded() {
            let written =
                tokio::task::spawn_blocking(move || crate::departed::write_file(&path, &bytes))
                    .await;
            if let Ok(Err(error)) = written {
                tracing::warn!(%error, "departed peers not saved");
            }
        }
        if let Err(error) = self.net.shutdown().await {
            tracing::debug!(%error, "network already stopped");
        }
        self.jobs = None;
        if let Some(closed) = self.storage_closed.take() {
            match closed.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => self.unclean = Some(format!("the final flush failed: {error}")),
                Err(_) => self.unclean = Some("the storage thread died".into()),
            }
        }
        if let Some(ready) = self.ready.take() {
            let _ = ready.send(Err(NodeError::ShuttingDown));
        }
        for waiter in self.shutdown_waiters.drain(..) {
            let _ = waiter.send(match &self.unclean {
                None => Ok(()),
                Some(reason) => Err(NodeError::UncleanStop(reason.clone())),
            });
        }
        tracing::info!(peer = %self.local, "node stopped");
    }

    // ---- inputs -----------------------------------------------------------------------

    /// Feeds `input` and everything performing its outputs produces, in order.
    fn feed(&mut self, input: Input) {
        self.inputs.push_back(input);
        while let Some(input) = self.inputs.pop_front() {
            let outputs = self.repo.handle(now_ms(), &mut self.rng, input);
            for output in outputs {
                self.perform(output);
            }
        }
    }

    fn on_completions(&mut self, group: Vec<Completion>) {
        for (id, result) in group {
            match &result {
                Ok(peerdoc_core::repo::StorageResult::Written) => {
                    self.metrics.write_completed(Ok(()))
                }
                Err(error) => self.metrics.write_completed(Err(error)),
                Ok(_) => {}
            }
            self.feed(Input::StorageCompleted { id, result });
        }
        self.drain_overflow();
    }

    fn on_request(&mut self, request: Request) {
        match request {
            Request::Command { command, reply } => {
                let id = CommandId(self.next_command);
                self.next_command += 1;
                self.pending.insert(id, reply);
                self.feed(Input::Command { id, command });
            }
            Request::List { reply } => {
                let list = self
                    .repo
                    .catalog()
                    .iter()
                    .map(|(id, meta)| DocumentSummary::new(*id, meta))
                    .collect();
                let _ = reply.send(list);
            }
            Request::Snapshot { reply } => {
                let stats = self.repo.stats();
                let connections = self
                    .repo
                    .connections()
                    .into_iter()
                    .filter_map(|info| self.conns.get(&info.conn).map(|peer| (*peer, info)))
                    .collect();
                let _ = reply.send(Snapshot {
                    storage_id: self.repo.storage_id().cloned(),
                    documents: stats.documents,
                    deleted: self.repo.catalog().values().filter(|m| m.deleted).count(),
                    loaded: stats.loaded,
                    evictions: stats.evictions,
                    storage_in_flight: stats.storage_in_flight,
                    connections,
                    failures: self
                        .failures
                        .iter()
                        .map(|(peer, (why, at))| (*peer, why.clone(), *at))
                        .collect(),
                    departed: self.departed.summaries(),
                });
            }
            Request::DocSync { reply } => {
                let _ = reply.send(self.doc_sync());
            }
            Request::Attach { role, label, reply } => self.attach(role, label, reply),
            Request::Protect { doc, reply } => {
                self.feed(Input::ProtectDocument { doc });
                let _ = reply.send(());
            }
            Request::SetAccess { access, reply } => {
                self.set_access(access);
                let _ = reply.send(());
            }
            Request::Shutdown { reply } => self.shutdown_waiters.push(reply),
        }
    }

    fn attach(
        &mut self,
        role: AttachRole,
        label: String,
        reply: oneshot::Sender<AttachedConnection>,
    ) {
        let conn = ConnectionId(self.next_conn);
        self.next_conn += 1;
        let (connection, slot, inbound, stopped) =
            attach::pair(conn, label, self.attached_queue_len);
        let frames = stream::unfold(inbound, |mut inbound| async move {
            inbound.recv().await.map(|frame| (frame, inbound))
        })
        .take_until(stopped)
        .map(move |frame| (conn, Some(frame)))
        .chain(stream::once(async move { (conn, None) }));
        if reply.send(connection).is_err() {
            // The caller gave up waiting: nothing was opened.
            return;
        }
        tracing::info!(%conn, label = %slot.label, ?role, "connection attached");
        self.attached.insert(conn, slot);
        self.attached_in.0.push(frames.boxed());
        self.feed(Input::ConnectionOpened {
            conn,
            initiator: role != AttachRole::Responder,
        });
        if role == AttachRole::Cloud {
            self.feed(Input::CloudEndpoint { conn });
        }
        if role == AttachRole::Responder {
            self.local_apps.insert(conn);
            if self.access.local_apps_read_only {
                self.feed(Input::ConnectionAccess {
                    conn,
                    access: PeerAccess::ReadOnly,
                });
            }
        }
    }

    /// Remembers why connecting with `peer` failed; logged at INFO when the reason is new.
    fn note_failure(&mut self, peer: PeerId, why: String) {
        if self.peers.contains_key(&peer) {
            return;
        }
        let changed = self
            .failures
            .get(&peer)
            .is_none_or(|(old, _)| old.split(':').next() != why.split(':').next());
        if changed {
            tracing::info!(%peer, reason = %why, "seen, not connected");
        }
        if self.failures.len() >= MAX_FAILURES
            && !self.failures.contains_key(&peer)
            && let Some(oldest) = self
                .failures
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(p, _)| *p)
        {
            self.failures.remove(&oldest);
        }
        self.failures.insert(peer, (why, SystemTime::now()));
    }

    /// Applies a new access policy to every open connection, and to new ones.
    fn set_access(&mut self, access: AccessPolicy) {
        let mut updates = Vec::new();
        for (peer, slot) in &self.peers {
            let new = access.of(peer);
            if new != self.access.of(peer) {
                updates.push((slot.conn, new));
            }
        }
        if access.local_apps_read_only != self.access.local_apps_read_only {
            let new = if access.local_apps_read_only {
                PeerAccess::ReadOnly
            } else {
                PeerAccess::ReadWrite
            };
            for conn in &self.local_apps {
                updates.push((*conn, new));
            }
        }
        self.access = access;
        for (conn, access) in updates {
            self.feed(Input::ConnectionAccess { conn, access });
        }
    }

    fn on_attached_frame(&mut self, conn: ConnectionId, frame: Option<Bytes>) {
        match frame {
            Some(bytes) => {
                if !self.attached.contains_key(&conn) {
                    tracing::trace!(%conn, "frame from a closed attached connection dropped");
                    return;
                }
                self.metrics.frame_received(bytes.len());
                self.feed(Input::MessageReceived {
                    conn,
                    bytes: Vec::from(bytes),
                });
            }
            None => {
                self.local_apps.remove(&conn);
                if let Some(slot) = self.attached.remove(&conn) {
                    tracing::info!(%conn, label = %slot.label, "attached connection closed by its transport");
                    self.feed(Input::ConnectionClosed { conn });
                }
            }
        }
    }

    /// Drops the node's side of an attached connection: its transport sees the frame
    /// channel end and learns `reason`. `engine_closed` says whether the engine already
    /// closed the connection itself.
    fn close_attached(
        &mut self,
        conn: ConnectionId,
        reason: &str,
        misbehaved: bool,
        engine_closed: bool,
    ) {
        self.local_apps.remove(&conn);
        let Some(slot) = self.attached.remove(&conn) else {
            return;
        };
        tracing::info!(%conn, label = %slot.label, reason, "attached connection closed");
        let _ = slot.closed.send((reason.to_owned(), misbehaved));
        if !engine_closed {
            self.inputs.push_back(Input::ConnectionClosed { conn });
        }
    }

    fn send_attached(&mut self, conn: ConnectionId, frame: Bytes) {
        let Some(slot) = self.attached.get(&conn) else {
            return;
        };
        match slot.to_transport.try_send(frame) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.close_attached(
                    conn,
                    "slow consumer: outbound frame queue full",
                    false,
                    false,
                );
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.close_attached(conn, "transport gone", false, false);
            }
        }
    }

    fn doc_sync(&self) -> Vec<DocumentSync> {
        self.repo
            .catalog()
            .iter()
            .filter(|(_, meta)| !meta.deleted)
            .map(|(id, meta)| DocumentSync {
                id: *id,
                title: meta.title.clone(),
                priority: meta.priority,
                heads: meta.heads.clone(),
                receipt: meta.receipt_status(),
                peers: self
                    .repo
                    .peer_doc_sync(id)
                    .iter()
                    .filter_map(|sync| {
                        let peer = self.conns.get(&sync.conn)?;
                        Some(PeerDocStatus::judge(*peer, &meta.heads, sync))
                    })
                    .chain(
                        self.departed
                            .iter()
                            .filter(|d| !self.peers.contains_key(&d.peer))
                            .map(|d| d.judge(id, &meta.heads)),
                    )
                    .collect(),
            })
            .collect()
    }

    fn on_net_event(&mut self, event: NetEvent) {
        match event {
            NetEvent::PeerConnected {
                peer,
                session,
                addr,
                ..
            } => {
                self.failures.remove(&peer);
                // The transport orders a peer's events, so an old slot means its
                // disconnect was lost; close it before opening the new one.
                self.forget_peer(peer);
                // Its departure record stays until this connection finishes the
                // handshake (`Event::PeerConnected`): a peer caught in the middle of
                // shutting down connects and drops before that, and forgetting here lost
                // what it had when it really left ("last seen never").
                let conn = ConnectionId(self.next_conn);
                self.next_conn += 1;
                self.peers.insert(
                    peer,
                    PeerSlot {
                        conn,
                        session,
                        attached: true,
                        backlog: VecDeque::new(),
                        addr: addr.clone(),
                    },
                );
                self.conns.insert(conn, peer);
                tracing::debug!(%peer, %addr, %conn, %session, "sync stream open");
                // Exactly one side speaks first: the lower peer id, as on both ends.
                let initiator = self.local < peer;
                self.feed(Input::ConnectionOpened { conn, initiator });
                let access = self.access.of(&peer);
                if access != PeerAccess::ReadWrite {
                    self.feed(Input::ConnectionAccess { conn, access });
                }
            }
            NetEvent::Frame {
                peer,
                session,
                bytes,
            } => {
                let Some(slot) = self
                    .peers
                    .get(&peer)
                    .filter(|s| s.attached && s.session == session)
                else {
                    tracing::trace!(%peer, %session, "frame from a detached or ended session dropped");
                    return;
                };
                let conn = slot.conn;
                self.metrics.frame_received(bytes.len());
                self.feed(Input::MessageReceived {
                    conn,
                    bytes: Vec::from(bytes),
                });
            }
            NetEvent::PeerDisconnected { peer, session } => {
                if self.peers.get(&peer).is_some_and(|s| s.session == session) {
                    self.forget_peer(peer);
                }
            }
            NetEvent::Gossip { from, bytes } => self.on_gossip(from, &bytes),
            NetEvent::PeerMisbehaved { peer, reason } => {
                tracing::warn!(%peer, %reason, "transport banned a misbehaving peer");
                if self.departed.forget(&peer) {
                    self.save_departed();
                }
            }
            NetEvent::Listening { addr } => tracing::info!(%addr, "listening"),
            NetEvent::DialFailed { peer, error } => {
                tracing::debug!(peer = ?peer, %error, "dial failed");
                if let Some(peer) = peer {
                    self.note_failure(peer, crate::types::failure_in_words(&error));
                }
            }
            NetEvent::ConnectionDenied { peer } => {
                tracing::debug!(%peer, "connection denied");
                self.note_failure(
                    peer,
                    "refused here: it is not a member of this device's team (or was removed)"
                        .to_owned(),
                );
            }
            other => tracing::debug!(event = ?other, "network event ignored"),
        }
    }

    /// An announcement makes the engine sync the document if we lack its heads: with the
    /// announcer when we have a session with it, else (relayed through the gossip mesh)
    /// with every connected peer. Malformed gossip is ignored; a peer that keeps sending
    /// it is banned.
    fn on_gossip(&mut self, from: PeerId, bytes: &[u8]) {
        match Announcement::decode(bytes) {
            Ok(Announcement { doc, heads }) => {
                let conn = self.peers.get(&from).filter(|s| s.attached).map(|s| s.conn);
                tracing::debug!(peer = %from, %doc, heads = heads.len(), direct = conn.is_some(), "announcement received");
                self.feed(Input::HeadsAnnounced {
                    doc,
                    heads,
                    from: conn,
                });
            }
            Err(error) => {
                if self.gossip_strikes.len() >= MAX_GOSSIP_OFFENDERS
                    && !self.gossip_strikes.contains_key(&from)
                {
                    self.gossip_strikes.clear();
                }
                let strikes = self.gossip_strikes.entry(from).or_insert(0);
                *strikes += 1;
                let strikes = *strikes;
                tracing::info!(peer = %from, %error, strikes, "malformed gossip ignored");
                if strikes >= MAX_GOSSIP_STRIKES {
                    self.gossip_strikes.remove(&from);
                    let net = self.net.clone();
                    let reason = format!("{strikes} malformed gossip messages ({error})");
                    tokio::spawn(async move {
                        if let Err(error) = net.disconnect_and_ban(from, reason).await {
                            tracing::debug!(peer = %from, %error, "ban not delivered");
                        }
                    });
                }
            }
        }
    }

    /// Queues an announcement of a local change for the publisher task; drops it when
    /// the queue is full (the sync streams deliver the change regardless).
    fn announce(&self, doc: peerdoc_core::DocumentId, heads: &[automerge::ChangeHash]) {
        let Some(queue) = &self.announcements else {
            return;
        };
        let bytes = Bytes::from(Announcement::new(doc, heads).encode());
        if queue.try_send(bytes).is_err() {
            tracing::debug!(%doc, "announcement queue full; announcement dropped");
        }
    }

    /// Closes the engine connection of `peer`, if any, and forgets the peer, keeping
    /// what it was known to have (`departed.rs`).
    fn forget_peer(&mut self, peer: PeerId) {
        if let Some(slot) = self.peers.remove(&peer) {
            if slot.attached {
                self.record_departure(peer, slot.conn, slot.addr);
                self.feed(Input::ConnectionClosed { conn: slot.conn });
            }
            self.conns.remove(&slot.conn);
        }
    }

    /// Remembers what `peer`, whose engine connection `conn` is about to close, was
    /// known to have, and saves it.
    fn record_departure(&mut self, peer: PeerId, conn: ConnectionId, addr: Multiaddr) {
        let now = SystemTime::now();
        if self.departed.record(&self.repo, peer, conn, addr, now) {
            self.save_departed();
        }
    }

    /// Hands the current departed records to the writer task.
    fn save_departed(&self) {
        if let Some(encoded) = self.departed.encoded() {
            self.departed_saves.send_replace(Some(encoded));
        }
    }

    // ---- outputs ----------------------------------------------------------------------

    fn perform(&mut self, output: Output) {
        match output {
            Output::Storage { id, op } => self.submit(StorageJob { id, op }),
            Output::Send { conn, bytes } => {
                if self.attached.contains_key(&conn) {
                    self.metrics.frame_sent(bytes.len());
                    self.send_attached(conn, Bytes::from(bytes));
                    return;
                }
                let Some(peer) = self.conns.get(&conn).copied() else {
                    return;
                };
                self.metrics.frame_sent(bytes.len());
                self.send_to(peer, conn, Bytes::from(bytes));
            }
            Output::Disconnect {
                conn,
                reason,
                misbehaved,
            } => {
                // The engine has already closed the connection on its side.
                if self.attached.contains_key(&conn) {
                    if misbehaved {
                        tracing::warn!(%conn, %reason, "attached peer misbehaved");
                    }
                    self.close_attached(conn, &reason, misbehaved, true);
                    return;
                }
                let Some(peer) = self.conns.get(&conn).copied() else {
                    return;
                };
                if let Some(slot) = self.peers.get_mut(&peer).filter(|s| s.conn == conn) {
                    slot.attached = false;
                    slot.backlog.clear();
                }
                if misbehaved {
                    let net = self.net.clone();
                    tokio::spawn(async move {
                        if let Err(error) = net.disconnect_and_ban(peer, reason).await {
                            tracing::debug!(%peer, %error, "ban not delivered");
                        }
                    });
                } else {
                    // A detached peer's stream would otherwise stay open and unused; a
                    // reconnect gives both engines a fresh session.
                    tracing::info!(%peer, %reason, "engine closed the connection; disconnecting");
                    self.disconnect_peer(peer);
                }
            }
            Output::ScheduleTick { at_ms } => {
                let delay = Duration::from_millis(at_ms.saturating_sub(now_ms()));
                self.tick_at = Some(Instant::now() + delay);
            }
            Output::Reply { id, result } => {
                if let Some(reply) = self.pending.remove(&id) {
                    let _ = reply.send(result.map_err(NodeError::from));
                }
            }
            Output::Event(event) => self.on_engine_event(event),
        }
    }

    /// Queues a storage job behind every earlier one.
    fn submit(&mut self, job: StorageJob) {
        if !self.overflow.is_empty() {
            self.overflow.push_back(job);
            return;
        }
        let Some(jobs) = &self.jobs else {
            self.storage_gone(job);
            return;
        };
        match jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(job)) => self.overflow.push_back(job),
            Err(TrySendError::Disconnected(job)) => self.storage_gone(job),
        }
    }

    fn drain_overflow(&mut self) {
        while let Some(job) = self.overflow.pop_front() {
            let Some(jobs) = &self.jobs else {
                self.storage_gone(job);
                continue;
            };
            match jobs.try_send(job) {
                Ok(()) => {}
                Err(TrySendError::Full(job)) => {
                    self.overflow.push_front(job);
                    break;
                }
                Err(TrySendError::Disconnected(job)) => self.storage_gone(job),
            }
        }
    }

    /// The storage thread is gone (it panicked): fail the job instead of losing it.
    fn storage_gone(&mut self, job: StorageJob) {
        tracing::error!(op = job.id.0, "storage thread is gone; operation failed");
        self.feed(Input::StorageCompleted {
            id: job.id,
            result: Err(StorageError::Closed),
        });
    }

    fn send_to(&mut self, peer: PeerId, conn: ConnectionId, frame: Bytes) {
        let Some(slot) = self
            .peers
            .get_mut(&peer)
            .filter(|s| s.attached && s.conn == conn)
        else {
            return;
        };
        let session = slot.session;
        if !slot.backlog.is_empty() {
            if slot.backlog.len() >= self.peer_backlog_len {
                self.detach(peer, "outbound backlog full");
            } else {
                slot.backlog.push_back(frame);
            }
            return;
        }
        match self.net.send_frame(peer, session, frame.clone()) {
            Ok(()) => {}
            Err(NetError::PeerQueueFull { .. }) => {
                slot.backlog.push_back(frame);
                self.retry_at
                    .get_or_insert_with(|| Instant::now() + BACKLOG_RETRY);
            }
            Err(NetError::PeerNotConnected { .. } | NetError::StaleSession { .. }) => {
                // Its PeerDisconnected event is on the way; the frame belonged to the
                // ended session and must not reach a newer one.
                tracing::debug!(%peer, %session, "frame for an ended sync session dropped");
            }
            Err(error) => {
                tracing::warn!(%peer, %error, "frame not sent");
                self.detach(peer, "frame could not be sent");
            }
        }
    }

    /// Offers backlogged frames to the transport again, in order.
    fn flush_backlogs(&mut self) {
        let mut still_full = false;
        for (peer, slot) in self.peers.iter_mut() {
            while let Some(frame) = slot.backlog.front() {
                match self.net.send_frame(*peer, slot.session, frame.clone()) {
                    Ok(()) => {
                        slot.backlog.pop_front();
                    }
                    Err(NetError::PeerQueueFull { .. }) => {
                        still_full = true;
                        break;
                    }
                    Err(error) => {
                        // The stream is ending; its PeerDisconnected event is on the way.
                        tracing::debug!(%peer, %error, "backlog dropped");
                        slot.backlog.clear();
                    }
                }
            }
        }
        if still_full {
            self.retry_at = Some(Instant::now() + BACKLOG_RETRY);
        }
    }

    /// Closes the engine's connection to a peer whose stream stays open.
    ///
    /// Sync state for this peer is persisted by the engine; when the stream ends and the
    /// peer reconnects, reconciliation brings both sides up to date.
    fn detach(&mut self, peer: PeerId, reason: &str) {
        let Some(slot) = self.peers.get_mut(&peer) else {
            return;
        };
        if !slot.attached {
            return;
        }
        tracing::warn!(%peer, reason, "detaching peer and disconnecting");
        slot.attached = false;
        slot.backlog.clear();
        self.inputs
            .push_back(Input::ConnectionClosed { conn: slot.conn });
        self.disconnect_peer(peer);
    }

    /// Asks the transport to close `peer`'s connections (no ban), without waiting.
    fn disconnect_peer(&self, peer: PeerId) {
        let net = self.net.clone();
        tokio::spawn(async move {
            if let Err(error) = net.disconnect(peer).await {
                tracing::debug!(%peer, %error, "disconnect not delivered");
            }
        });
    }

    fn origin(&self, origin: ChangeOrigin) -> Origin {
        match origin {
            ChangeOrigin::Local => Origin::Local,
            ChangeOrigin::Remote(conn) => Origin::Remote(self.conns.get(&conn).copied()),
            // Another cloud node on the same database: a peer this node has no link to.
            ChangeOrigin::Storage => Origin::Remote(None),
        }
    }

    fn publish(&self, event: NodeEvent) {
        // No subscriber is not an error.
        let _ = self.events.send(event);
    }

    fn on_engine_event(&mut self, event: Event) {
        match event {
            Event::Ready {
                storage_id,
                documents,
            } => {
                tracing::info!(peer = %self.local, storage = %storage_id, documents, "node ready");
                if let Some(ready) = self.ready.take() {
                    let _ = ready.send(Ok(()));
                }
            }
            Event::StorageFailed { error } => {
                if !self.repo.is_ready()
                    && let Some(ready) = self.ready.take()
                {
                    let _ = ready.send(Err(NodeError::StartFailed(error.to_string())));
                }
                self.publish(NodeEvent::StorageFailed {
                    error: error.to_string(),
                });
            }
            Event::DocumentChanged {
                doc,
                heads,
                patches,
                origin,
            } => {
                if matches!(origin, ChangeOrigin::Local | ChangeOrigin::Storage) {
                    self.announce(doc, &heads);
                }
                let origin = self.origin(origin);
                self.metrics
                    .changed(doc, &heads, matches!(origin, Origin::Local));
                self.publish(NodeEvent::DocumentChanged {
                    doc,
                    heads,
                    origin,
                    patches: patches.len(),
                    patch_json: patches_to_json(&patches, MAX_EVENT_PATCHES),
                    paths: changed_paths(&patches),
                });
            }
            Event::DocumentCreated { doc, origin } => {
                let origin = self.origin(origin);
                self.publish(NodeEvent::DocumentCreated { doc, origin });
            }
            Event::DocumentDeleted { doc, origin } => {
                let origin = self.origin(origin);
                self.publish(NodeEvent::DocumentDeleted { doc, origin });
            }
            Event::ConflictDetected { doc, record } => {
                self.metrics.conflict();
                self.publish(NodeEvent::ConflictDetected { doc, record });
            }
            Event::PeerConnected {
                conn,
                storage_id,
                peerdoc,
                ..
            } => {
                if let Some(slot) = self.attached.get(&conn) {
                    tracing::info!(%conn, label = %slot.label, peerdoc, "attached peer joined");
                }
                if let Some(peer) = self.conns.get(&conn).copied() {
                    tracing::info!(%peer, peerdoc, "peer connected");
                    // Back for real: a new departure is recorded when it leaves again.
                    if peerdoc && self.departed.forget(&peer) {
                        self.save_departed();
                    }
                    self.publish(NodeEvent::PeerConnected {
                        peer,
                        storage_id,
                        peerdoc,
                    });
                }
            }
            Event::PeerDisconnected { conn, .. } => {
                if let Some(peer) = self.conns.get(&conn).copied() {
                    tracing::info!(%peer, "peer disconnected");
                    self.publish(NodeEvent::PeerDisconnected { peer });
                }
            }
            Event::Ephemeral { doc, from, data } => {
                self.publish(NodeEvent::Ephemeral {
                    doc,
                    from: from.as_str().to_owned(),
                    data,
                });
            }
            Event::DocumentDamaged { doc, reason } => {
                tracing::warn!(doc = %doc, %reason, "document damaged");
                self.publish(NodeEvent::DocumentDamaged { doc, reason });
            }
            Event::DocumentSynced { doc, heads, .. } => self.metrics.synced(doc, &heads),
            other => tracing::trace!(event = ?other, "engine event"),
        }
    }
}
