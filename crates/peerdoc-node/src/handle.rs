//! [`NodeHandle`]: the cheap, cloneable API embedders call.

use std::collections::BTreeMap;
use std::sync::Arc;

use automerge::ChangeHash;
use peerdoc_core::DocumentId;
use peerdoc_core::model::{EditOp, HistoryEntry};
use peerdoc_core::repo::{ChangeRequest, Command, Prepared, Reply, RepoError};
use peerdoc_net::{Multiaddr, NetHandle, PeerId};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::attach::{AttachRole, AttachedConnection};
use crate::driver::{AccessPolicy, Request, Snapshot};
use crate::metrics::{Metrics, NodeMetrics};
use crate::{
    Conflicts, DocumentSummary, DocumentSync, NodeError, NodeEvent, NodeStatus, PeerStatus,
};

/// Talks to a running [`Node`](crate::Node). Clone it freely; every clone reaches the
/// same node.
///
/// Every method sends one request over a bounded channel and waits for the answer.
/// Writes (`create`, `import`, `change`, `delete`, `set_meta`) return once what they
/// wrote is durable against a process crash. After shutdown every method fails with
/// [`NodeError::ShuttingDown`].
#[derive(Debug, Clone)]
pub struct NodeHandle {
    pub(crate) requests: mpsc::Sender<Request>,
    pub(crate) events: broadcast::Sender<NodeEvent>,
    pub(crate) net: NetHandle,
    pub(crate) metrics: Arc<Metrics>,
    /// The device's actor prefix, for documents prepared off the driver.
    pub(crate) actor_prefix: Option<[u8; 8]>,
}

impl NodeHandle {
    /// This node's libp2p peer id (its automerge-repo peer id is the same, as a string).
    pub fn peer_id(&self) -> PeerId {
        self.net.local_peer_id()
    }

    /// Counters and histograms since the node started (cheap: no round trip to the
    /// driver).
    pub fn metrics(&self) -> NodeMetrics {
        self.metrics.snapshot()
    }

    /// Creates a document whose root is `initial` (a JSON object).
    pub async fn create(
        &self,
        initial: serde_json::Value,
        priority: i32,
        title: Option<String>,
    ) -> Result<DocumentId, NodeError> {
        let prefix = self.actor_prefix;
        let big = json_weight(&initial) >= BIG_DOCUMENT_BYTES;
        let prepared = off_the_driver(move || {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_os_rng();
            Prepared::from_json(&initial, prefix, &mut rng, now_ms)
        })
        .await?;
        let command = Command::Adopt {
            prepared: Box::new(prepared),
            priority,
            title,
        };
        let created = self.created(command, "create").await;
        if big {
            release_freed_memory().await;
        }
        created
    }

    /// Runs a command that creates a document and returns the new document's id.
    async fn created(&self, command: Command, name: &'static str) -> Result<DocumentId, NodeError> {
        match self.command(command).await? {
            Reply::Created { doc, .. } => Ok(doc),
            _ => Err(NodeError::UnexpectedReply { command: name }),
        }
    }

    /// Creates a document under a given id, one that every peer derives the same way
    /// (a team's membership document): copies created independently merge when they
    /// sync. Fails with [`NodeError::InvalidChange`] when the id is already known here.
    pub async fn create_at(
        &self,
        doc: DocumentId,
        initial: serde_json::Value,
        priority: i32,
        title: Option<String>,
    ) -> Result<DocumentId, NodeError> {
        let command = Command::CreateAt {
            doc,
            initial: Some(initial),
            priority,
            title,
        };
        self.created(command, "create_at").await
    }

    /// Imports a whole automerge document (`save()` bytes) under a new id.
    pub async fn import(
        &self,
        bytes: Vec<u8>,
        priority: i32,
        title: Option<String>,
    ) -> Result<DocumentId, NodeError> {
        let big = bytes.len() >= BIG_DOCUMENT_BYTES;
        let prepared = off_the_driver(move || Prepared::from_bytes(&bytes)).await?;
        let command = Command::Adopt {
            prepared: Box::new(prepared),
            priority,
            title,
        };
        let created = self.created(command, "import").await;
        if big {
            release_freed_memory().await;
        }
        created
    }

    /// Applies `request` as one automerge change; returns the document's new heads once
    /// the change is durable. A request that changes nothing returns the current heads.
    pub async fn change(
        &self,
        doc: DocumentId,
        request: ChangeRequest,
        message: Option<String>,
    ) -> Result<Vec<ChangeHash>, NodeError> {
        match self
            .command(Command::Change {
                doc,
                request,
                message,
            })
            .await?
        {
            Reply::Changed { heads, .. } => Ok(heads),
            _ => Err(NodeError::UnexpectedReply { command: "change" }),
        }
    }

    /// Makes sure `doc` is here, asking every connected peer for it when it is not
    /// (automerge-repo's `find`; a stock sync server is reached this way). Returns its
    /// heads once it is held durably.
    ///
    /// # Errors
    /// [`NodeError::DocumentNotFound`] when no connected peer has it (each said so, or
    /// closed, or none answered within `find_timeout_ms`), or none is connected;
    /// [`NodeError::DocumentDeleted`] when a peer says it was deleted.
    pub async fn find(&self, doc: DocumentId) -> Result<Vec<ChangeHash>, NodeError> {
        match self.command(Command::Find { doc }).await? {
            Reply::Opened { heads, .. } => Ok(heads),
            _ => Err(NodeError::UnexpectedReply { command: "find" }),
        }
    }

    /// [`NodeHandle::change`] with JSON-pointer edits.
    pub async fn edit(
        &self,
        doc: DocumentId,
        ops: Vec<EditOp>,
        message: Option<String>,
    ) -> Result<Vec<ChangeHash>, NodeError> {
        self.change(doc, ChangeRequest::Ops(ops), message).await
    }

    /// The document as JSON.
    pub async fn read(&self, doc: DocumentId) -> Result<serde_json::Value, NodeError> {
        self.read_inner(doc, None).await.map(|(value, _)| value)
    }

    /// The document as JSON, with the heads it was read at.
    pub async fn read_with_heads(
        &self,
        doc: DocumentId,
    ) -> Result<(serde_json::Value, Vec<ChangeHash>), NodeError> {
        self.read_inner(doc, None).await
    }

    /// The document as JSON as it was at `heads`.
    pub async fn read_at(
        &self,
        doc: DocumentId,
        heads: Vec<ChangeHash>,
    ) -> Result<serde_json::Value, NodeError> {
        self.read_inner(doc, Some(heads))
            .await
            .map(|(value, _)| value)
    }

    async fn read_inner(
        &self,
        doc: DocumentId,
        heads: Option<Vec<ChangeHash>>,
    ) -> Result<(serde_json::Value, Vec<ChangeHash>), NodeError> {
        match self.command(Command::Read { doc, heads }).await? {
            Reply::Json { value, heads } => Ok((value, heads)),
            _ => Err(NodeError::UnexpectedReply { command: "read" }),
        }
    }

    /// The whole document as automerge `save()` bytes.
    pub async fn export(&self, doc: DocumentId) -> Result<Vec<u8>, NodeError> {
        match self.command(Command::Export { doc }).await? {
            Reply::Exported(bytes) => Ok(bytes),
            _ => Err(NodeError::UnexpectedReply { command: "export" }),
        }
    }

    /// Deletes the document here and, through sync, everywhere. It never comes back.
    pub async fn delete(&self, doc: DocumentId) -> Result<(), NodeError> {
        match self.command(Command::Delete { doc }).await? {
            Reply::Done => Ok(()),
            _ => Err(NodeError::UnexpectedReply { command: "delete" }),
        }
    }

    /// Changes a document's sync priority and/or title.
    pub async fn set_meta(
        &self,
        doc: DocumentId,
        priority: Option<i32>,
        title: Option<String>,
    ) -> Result<(), NodeError> {
        match self
            .command(Command::SetMeta {
                doc,
                priority,
                title,
            })
            .await?
        {
            Reply::Done => Ok(()),
            _ => Err(NodeError::UnexpectedReply {
                command: "set_meta",
            }),
        }
    }

    /// Sends ephemeral bytes (presence, cursors) about a document to every peer.
    pub async fn broadcast(&self, doc: DocumentId, data: Vec<u8>) -> Result<(), NodeError> {
        match self.command(Command::Broadcast { doc, data }).await? {
            Reply::Done => Ok(()),
            _ => Err(NodeError::UnexpectedReply {
                command: "broadcast",
            }),
        }
    }

    /// Fields with concurrent values now, and the log of every conflict seen here.
    pub async fn conflicts(&self, doc: DocumentId) -> Result<Conflicts, NodeError> {
        match self.command(Command::Conflicts { doc }).await? {
            Reply::Conflicts { current, log } => Ok(Conflicts { current, log }),
            _ => Err(NodeError::UnexpectedReply {
                command: "conflicts",
            }),
        }
    }

    /// The document's changes.
    pub async fn history(&self, doc: DocumentId) -> Result<Vec<HistoryEntry>, NodeError> {
        match self.command(Command::History { doc }).await? {
            Reply::History(entries) => Ok(entries),
            _ => Err(NodeError::UnexpectedReply { command: "history" }),
        }
    }

    /// Every document this node knows, tombstones included, in id order.
    pub async fn list(&self) -> Result<Vec<DocumentSummary>, NodeError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::List { reply }).await?;
        answer.await.map_err(|_| NodeError::ShuttingDown)
    }

    /// Events from now on. A receiver that falls more than `event_queue_len` events
    /// behind loses the oldest ones (`RecvError::Lagged`); reading the document again
    /// always gives the current state.
    pub fn subscribe(&self) -> broadcast::Receiver<NodeEvent> {
        self.events.subscribe()
    }

    /// Every live document's sync state with each connected peer: what each peer is
    /// missing, as far as the engine knows.
    pub async fn sync_status(&self) -> Result<Vec<DocumentSync>, NodeError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::DocSync { reply }).await?;
        answer.await.map_err(|_| NodeError::ShuttingDown)
    }

    /// Every peer with a libp2p connection or a sync connection, with both views.
    pub async fn peers(&self) -> Result<Vec<PeerStatus>, NodeError> {
        let snapshot = self.snapshot().await?;
        self.merge_peers(snapshot.connections, snapshot.failures, snapshot.departed)
            .await
    }

    /// A snapshot of the node: ids, addresses, document counts and per-peer counters.
    pub async fn status(&self) -> Result<NodeStatus, NodeError> {
        let snapshot = self.snapshot().await?;
        let listen_addrs = self.net.listen_addrs().await?;
        let Snapshot {
            storage_id,
            documents,
            deleted,
            loaded,
            evictions,
            storage_in_flight,
            connections,
            failures,
            departed,
        } = snapshot;
        Ok(NodeStatus {
            peer_id: self.peer_id(),
            storage_id,
            listen_addrs,
            documents,
            deleted,
            loaded,
            evictions,
            storage_in_flight,
            peers: self.merge_peers(connections, failures, departed).await?,
        })
    }

    /// Dials a peer's address once (e.g. `/ip4/127.0.0.1/tcp/4001`) and returns its
    /// peer id once connected. The sync connection is reported by
    /// [`NodeEvent::PeerConnected`] once the handshake finished.
    pub async fn dial(&self, addr: Multiaddr) -> Result<PeerId, NodeError> {
        Ok(self.net.dial(addr).await?)
    }

    /// Attaches a sync connection over a transport the node does not own (a
    /// WebSocket, a pipe): the caller moves whole automerge-repo frames between the
    /// transport and the returned [`AttachedConnection`]. `label` names it in logs.
    ///
    /// With [`AttachRole::Initiator`] the node sends `join` at once; with
    /// [`AttachRole::Responder`] it waits for the other side's.
    pub async fn attach(
        &self,
        role: AttachRole,
        label: impl Into<String>,
    ) -> Result<AttachedConnection, NodeError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Attach {
            role,
            label: label.into(),
            reply,
        })
        .await?;
        answer.await.map_err(|_| NodeError::ShuttingDown)
    }

    /// Sets who may only read: the changes of `access.read_only_peers` (a team's
    /// viewers) are never applied, nor are their tombstones or new documents, and
    /// with `local_apps_read_only` the same holds for apps attached on this device
    /// (it is a viewer). Applies at once to open connections and to later ones.
    pub async fn set_access(&self, access: AccessPolicy) -> Result<(), NodeError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::SetAccess { access, reply }).await?;
        answer.await.map_err(|_| NodeError::ShuttingDown)
    }

    /// Protects `doc` (a team's membership document, made of verified signed records):
    /// its changes are taken from every connection, read-only ones included, and it
    /// cannot be deleted, here or by a peer.
    pub async fn protect_document(&self, doc: DocumentId) -> Result<(), NodeError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Protect { doc, reply }).await?;
        answer.await.map_err(|_| NodeError::ShuttingDown)
    }

    /// Keeps dialing `addr` from now on, with backoff (a device added at run time);
    /// false when it was already dialed (see [`peerdoc_net::NetHandle::add_peer`]).
    pub async fn add_peer(&self, addr: Multiaddr) -> Result<bool, NodeError> {
        Ok(self.net.add_peer(addr).await?)
    }

    /// Stops dialing `addr`; whether it was dialed.
    pub async fn remove_peer(&self, addr: Multiaddr) -> Result<bool, NodeError> {
        Ok(self.net.remove_peer(addr).await?)
    }

    /// What discovery found so far (mDNS on, peers it lists, explicit addresses).
    pub async fn discovery(&self) -> Result<peerdoc_net::Discovery, NodeError> {
        Ok(self.net.discovery().await?)
    }

    /// The addresses dialed as explicit peers (configured and added).
    pub async fn explicit_peers(&self) -> Result<Vec<Multiaddr>, NodeError> {
        Ok(self.net.explicit_peers().await?)
    }

    /// Replaces the transport's allowlist (the team's members): peers no longer on it
    /// are disconnected at once and refused from then on.
    pub async fn set_allowlist(
        &self,
        peers: std::collections::BTreeSet<PeerId>,
    ) -> Result<(), NodeError> {
        Ok(self.net.set_allowlist(peers).await?)
    }

    /// Replaces the team key of a node started with one (see
    /// [`peerdoc_net::NetHandle::set_team_key`]): every connection is closed and new
    /// ones need the new key.
    pub async fn set_team_key(&self, key: [u8; 32]) -> Result<(), NodeError> {
        Ok(self.net.set_team_key(key).await?)
    }

    /// Dials with `current` and accepts inbound connections under `current` or any of
    /// `also_accept` (previous team keys in their grace period); see
    /// [`peerdoc_net::NetHandle::set_team_keys`].
    pub async fn set_team_keys(
        &self,
        current: [u8; 32],
        also_accept: Vec<[u8; 32]>,
    ) -> Result<(), NodeError> {
        Ok(self.net.set_team_keys(current, also_accept).await?)
    }

    /// Stops the node gracefully: new commands are refused, storage operations already
    /// issued finish, sync states are persisted, the network stops and the store is
    /// flushed and closed. Returns once the data directory is free, with
    /// [`NodeError::UncleanStop`] if the final flush failed. Calling it again, or on a
    /// stopped node, returns at once.
    pub async fn shutdown(&self) -> Result<(), NodeError> {
        let (reply, answer) = oneshot::channel();
        if self.send(Request::Shutdown { reply }).await.is_err() {
            return Ok(());
        }
        // A dropped reply means another caller's shutdown is finishing.
        answer.await.unwrap_or(Ok(()))
    }

    async fn snapshot(&self) -> Result<Snapshot, NodeError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Snapshot { reply }).await?;
        answer.await.map_err(|_| NodeError::ShuttingDown)
    }

    async fn merge_peers(
        &self,
        connections: Vec<(PeerId, peerdoc_core::repo::ConnectionInfo)>,
        failures: Vec<(PeerId, String, std::time::SystemTime)>,
        departed: Vec<(PeerId, crate::Departure)>,
    ) -> Result<Vec<PeerStatus>, NodeError> {
        let mut peers: BTreeMap<PeerId, PeerStatus> = BTreeMap::new();
        for info in self.net.peers().await? {
            let peer = info.peer;
            peers.insert(
                peer,
                PeerStatus {
                    net: Some(info),
                    ..PeerStatus::bare(peer)
                },
            );
        }
        for (peer, info) in connections {
            peers
                .entry(peer)
                .or_insert_with(|| PeerStatus::bare(peer))
                .sync = Some(info);
        }
        for (peer, why, at) in failures {
            peers.entry(peer).or_insert(PeerStatus {
                last_failure: Some((why, at)),
                ..PeerStatus::bare(peer)
            });
        }
        // A departed peer's libp2p connection may linger (or be back) before its sync
        // stream: the transport's view comes first, the departure is added to it.
        for (peer, departure) in departed {
            peers
                .entry(peer)
                .or_insert_with(|| PeerStatus::bare(peer))
                .departed = Some(departure);
        }
        Ok(peers.into_values().collect())
    }

    async fn command(&self, command: Command) -> Result<Reply, NodeError> {
        let (reply, answer) = oneshot::channel();
        self.send(Request::Command { command, reply }).await?;
        answer.await.map_err(|_| NodeError::ShuttingDown)?
    }

    async fn send(&self, request: Request) -> Result<(), NodeError> {
        self.requests
            .send(request)
            .await
            .map_err(|_| NodeError::ShuttingDown)
    }
}

/// Builds or loads a new document on tokio's blocking pool: megabytes of text take
/// seconds to turn into an automerge document, and the driver, which handles every
/// document's work one input at a time, must not wait for that (`docs/benchmarks.md`,
/// "Big documents").
/// Content this big (JSON string bytes, or `save()` bytes to import) leaves tens to
/// hundreds of MB freed behind it once built, saved and handed to the engine.
const BIG_DOCUMENT_BYTES: usize = 1024 * 1024;

/// Roughly how many bytes `value` holds: its strings' lengths, and 8 per other node.
fn json_weight(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::String(s) => s.len(),
        serde_json::Value::Array(items) => items.iter().map(json_weight).sum::<usize>() + 8,
        serde_json::Value::Object(map) => {
            map.iter()
                .map(|(k, v)| k.len() + json_weight(v))
                .sum::<usize>()
                + 8
        }
        _ => 8,
    }
}

/// Hands memory that was freed back to the OS after a big document was built. glibc
/// keeps freed memory in its arenas (one per thread that allocated it) instead of
/// returning it: a 16 MiB string created through the API left the daemon at 910 MB of
/// RSS for good, of which about 56 MB was in use (`malloc_trim` from a debugger brought
/// it back to that). Most of it is freed only after the reply, by the engine and the
/// store (trimming 1 s after the reply released nothing; 5 s after, all of it), so
/// the trim runs 5 s and again 30 s later, on the blocking pool (it walks every arena),
/// and the reply does not wait. Elsewhere than glibc, nothing to do.
async fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    tokio::spawn(async {
        for wait in [5, 25] {
            tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
            let trimmed = tokio::task::spawn_blocking(|| {
                // SAFETY: malloc_trim only releases free memory of the allocator's own
                // arenas; it takes no pointers and is thread-safe in glibc.
                unsafe { libc::malloc_trim(0) }
            })
            .await;
            tracing::debug!(released = ?trimmed.map(|r| r == 1), "freed memory handed back after a big document");
        }
    });
}

async fn off_the_driver(
    prepare: impl FnOnce() -> Result<Prepared, RepoError> + Send + 'static,
) -> Result<Prepared, NodeError> {
    match tokio::task::spawn_blocking(prepare).await {
        Ok(prepared) => prepared.map_err(NodeError::from),
        Err(e) if e.is_cancelled() => Err(NodeError::ShuttingDown),
        // automerge panicked building it: that document cannot be made, the node is fine.
        Err(e) => Err(NodeError::InvalidDocument(format!(
            "building the document failed: {e}"
        ))),
    }
}
