//! What goes into and comes out of the [`Repo`](super::Repo) state machine.

use std::fmt;

use automerge::{ChangeHash, Patch};

use crate::ids::{ConnectionId, DocumentId, PeerId, StorageId};
use crate::model::{Conflict, EditOp, HistoryEntry};
use crate::persist::{ConflictRecord, DocumentMeta};
use crate::storage::{StorageError, StorageKey, WriteBatch};

/// Echoed in the [`Output::Reply`] that answers a [`Command`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CommandId(pub u64);

/// Echoed in the [`Input::StorageCompleted`] that answers an [`Output::Storage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StorageOpId(pub u64);

/// Everything that can happen to a repo.
#[derive(Debug)]
pub enum Input {
    /// The first input: load the catalog and storage id.
    Start,
    /// A request from the local application.
    Command {
        /// Echoed in the reply.
        id: CommandId,
        /// What to do.
        command: Command,
    },
    /// A connection to a peer is open. The initiator speaks first (`join`).
    ConnectionOpened {
        /// The driver's id for it; never reused.
        conn: ConnectionId,
        /// Whether we dialled.
        initiator: bool,
    },
    /// The driver dialled `conn` as one of the team's cloud endpoints: what the peer
    /// confirms is recorded as cloud receipts (peers that say they are a cloud count
    /// without this).
    CloudEndpoint {
        /// Which connection.
        conn: ConnectionId,
    },
    /// What the peer on `conn` may do to our documents (the driver knows who the peer
    /// really is; the engine only trusts the transport's word). Connections start as
    /// [`PeerAccess::ReadWrite`]; this may come at any time and applies at once.
    ConnectionAccess {
        /// Which connection.
        conn: ConnectionId,
        /// Its access from now on.
        access: PeerAccess,
    },
    /// Protect `doc` (a team's membership document, whose entries are verified
    /// signatures): its changes are taken from every connection, read-only ones
    /// included, and it cannot be deleted, locally or by a peer's tombstone. Members
    /// that disagree about who may write must still converge on who is in the team.
    ProtectDocument {
        /// The document.
        doc: DocumentId,
    },
    /// A connection closed (by either side, or reset).
    ConnectionClosed {
        /// Which one.
        conn: ConnectionId,
    },
    /// A complete frame from a peer.
    MessageReceived {
        /// On which connection.
        conn: ConnectionId,
        /// The encoded wire message.
        bytes: Vec<u8>,
    },
    /// A storage operation finished.
    StorageCompleted {
        /// Which one.
        id: StorageOpId,
        /// Its result.
        result: Result<StorageResult, StorageError>,
    },
    /// The timer requested by [`Output::ScheduleTick`] fired.
    Tick,
    /// A peer announced (over gossip) that `doc` is at `heads`. If we lack any of them
    /// the engine syncs `doc` at once with `from`, or, when `from` is `None` or not a
    /// ready connection (the announcement was relayed), with every ready peerdoc peer.
    /// Empty `heads` means "changed, heads not given". Unknown and deleted documents,
    /// and heads we already have, are ignored.
    HeadsAnnounced {
        /// The document.
        doc: DocumentId,
        /// Its heads at the announcer.
        heads: Vec<ChangeHash>,
        /// The connection to the announcer, if we have one.
        from: Option<ConnectionId>,
    },
    /// Another writer of a shared store (a second cloud node on the same database)
    /// committed changes to `doc`'s stored data: the engine reads it back, merges what
    /// it lacks into the loaded document (or its catalog record), and pushes the result
    /// to connected peers. `None` means anything may have changed (notifications were
    /// missed): every catalog record is read again and each that differs is refreshed.
    /// Never needed with a store only this engine writes.
    StorageChanged {
        /// The document, or `None` for "all of them".
        doc: Option<DocumentId>,
    },
}

/// What a connected peer may do to our documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PeerAccess {
    /// Read and write: its changes and tombstones are applied (team editors, admins,
    /// local apps).
    #[default]
    ReadWrite,
    /// Read only (a team viewer): it receives our documents, but its changes are never
    /// applied (automerge's read-only sync: we neither apply nor request them), its
    /// tombstones are ignored and it cannot introduce a document we do not have.
    ReadOnly,
    /// Only protected documents (`Input::ProtectDocument`) are synced with it, both
    /// ways; nothing else is sent to it or taken from it. For a device removed from the
    /// team during the short notice before its connections close: it learns that it was
    /// removed, and nothing else.
    ProtectedOnly,
}

/// A document edit, applied as one automerge change.
pub enum ChangeRequest {
    /// JSON-pointer edits (what the HTTP API speaks).
    Ops(Vec<EditOp>),
    /// Make the root equal to this JSON value with minimal edits.
    ReplaceWith(serde_json::Value),
    /// Arbitrary code over the transaction (what embedders use).
    Func(ChangeFn),
    /// Write a value at `path` that supersedes every conflicting value there.
    Resolve {
        /// JSON pointer of the conflicted field.
        path: String,
        /// The value to keep (one of the conflicting ones, or a new one).
        value: serde_json::Value,
    },
    /// Make the content equal to what it was at `heads`, as a new change.
    Revert {
        /// The earlier heads.
        heads: Vec<ChangeHash>,
    },
}

/// Code run inside a transaction; an `Err` rolls the transaction back.
pub type ChangeFn = Box<
    dyn FnOnce(&mut automerge::transaction::Transaction<'_>) -> Result<(), crate::model::ModelError>
        + Send,
>;

impl fmt::Debug for ChangeRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ops(ops) => f.debug_tuple("Ops").field(ops).finish(),
            Self::ReplaceWith(v) => f.debug_tuple("ReplaceWith").field(v).finish(),
            Self::Func(_) => f.write_str("Func(..)"),
            Self::Resolve { path, value } => f
                .debug_struct("Resolve")
                .field("path", path)
                .field("value", value)
                .finish(),
            Self::Revert { heads } => f.debug_struct("Revert").field("heads", heads).finish(),
        }
    }
}

/// A request from the local application.
#[derive(Debug)]
pub enum Command {
    /// Create a document, optionally from a JSON object. Replies [`Reply::Created`] once durable.
    Create {
        /// Initial content (must be a JSON object).
        initial: Option<serde_json::Value>,
        /// Sync priority (higher first).
        priority: i32,
        /// A human title.
        title: Option<String>,
    },
    /// Create a document under a given id (one whose id all peers derive, like a
    /// team's membership document). Two peers that create the same id independently
    /// hold two histories that merge when they sync. Fails with
    /// [`RepoError::InvalidChange`] if the id is already known here.
    CreateAt {
        /// The id.
        doc: DocumentId,
        /// Initial content (must be a JSON object).
        initial: Option<serde_json::Value>,
        /// Sync priority (higher first).
        priority: i32,
        /// A human title.
        title: Option<String>,
    },
    /// Import a whole automerge document (`save()` bytes) under a new id.
    Import {
        /// The saved document.
        bytes: Vec<u8>,
        /// Sync priority.
        priority: i32,
        /// A human title.
        title: Option<String>,
    },
    /// Create a document from one prepared outside the engine ([`Prepared`]: built from
    /// JSON or loaded from bytes on a worker thread, so that a big document does not
    /// hold up every other one while it is built). Replies [`Reply::Created`] once
    /// durable, like [`Command::Create`] and [`Command::Import`].
    Adopt {
        /// The prepared document.
        prepared: Box<super::commands::Prepared>,
        /// Sync priority.
        priority: i32,
        /// A human title.
        title: Option<String>,
    },
    /// Load a document into memory (replies [`Reply::Opened`]).
    Open {
        /// Which.
        doc: DocumentId,
    },
    /// Change a document. Replies [`Reply::Changed`] once the change is durable.
    Change {
        /// Which.
        doc: DocumentId,
        /// The edit.
        request: ChangeRequest,
        /// The change's message (shown in history).
        message: Option<String>,
    },
    /// Like `Open`, but a document not held here is asked for from every connected peer
    /// (automerge-repo's `find`): replies [`Reply::Opened`] once it arrived and is
    /// durable, or `DocumentNotFound` when every peer said it does not have it, or none
    /// is connected, or `find_timeout_ms` passed.
    Find {
        /// Which.
        doc: DocumentId,
    },
    /// Read a document as JSON (at `heads` when given).
    Read {
        /// Which.
        doc: DocumentId,
        /// Earlier heads to read at.
        heads: Option<Vec<ChangeHash>>,
    },
    /// The document as `save()` bytes.
    Export {
        /// Which.
        doc: DocumentId,
    },
    /// Current conflicts and the conflict log.
    Conflicts {
        /// Which.
        doc: DocumentId,
    },
    /// The document's changes.
    History {
        /// Which.
        doc: DocumentId,
    },
    /// Delete a document everywhere; it never comes back.
    Delete {
        /// Which.
        doc: DocumentId,
    },
    /// Change a document's priority and/or title.
    SetMeta {
        /// Which.
        doc: DocumentId,
        /// New priority, if given.
        priority: Option<i32>,
        /// New title, if given.
        title: Option<String>,
    },
    /// Send ephemeral data (presence, cursors) about a document to every peer.
    Broadcast {
        /// About which document.
        doc: DocumentId,
        /// Opaque application bytes.
        data: Vec<u8>,
    },
}

/// The answer to a command.
#[derive(Debug)]
pub enum Reply {
    /// A document was created (durably).
    Created {
        /// Its id.
        doc: DocumentId,
        /// Its heads.
        heads: Vec<ChangeHash>,
    },
    /// The document is loaded; read it with [`Repo::document`](super::Repo::document).
    Opened {
        /// Which.
        doc: DocumentId,
        /// Its heads.
        heads: Vec<ChangeHash>,
    },
    /// A change is durable (or there was nothing to change).
    Changed {
        /// The new heads.
        heads: Vec<ChangeHash>,
        /// The change made, if any.
        change: Option<ChangeHash>,
    },
    /// A JSON view.
    Json {
        /// The content.
        value: serde_json::Value,
        /// At which heads.
        heads: Vec<ChangeHash>,
    },
    /// `save()` bytes.
    Exported(Vec<u8>),
    /// Conflicts now, and every conflict ever logged.
    Conflicts {
        /// Fields that hold several values now.
        current: Vec<Conflict>,
        /// The audit log (first sighting of each conflict).
        log: Vec<ConflictRecord>,
    },
    /// A document's changes.
    History(Vec<HistoryEntry>),
    /// Done (delete, metadata, broadcast).
    Done,
}

/// Why a command failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RepoError {
    /// No such document here.
    #[error("document {0} not found")]
    DocumentNotFound(DocumentId),
    /// The document was deleted.
    #[error("document {0} was deleted")]
    DocumentDeleted(DocumentId),
    /// The edit was invalid; nothing was changed.
    #[error("invalid change: {0}")]
    InvalidChange(String),
    /// Heads that this document does not contain.
    #[error("unknown heads for document {0}")]
    UnknownHeads(DocumentId),
    /// Bytes that are not an automerge document.
    #[error("not an automerge document: {0}")]
    InvalidDocument(String),
    /// The storage failed; the change is in memory but not acknowledged as durable.
    #[error("storage failed: {0}")]
    Storage(String),
    /// The disk is full; the change is in memory but not acknowledged as durable (it is
    /// saved when space is freed, unless the daemon stops first).
    #[error("{0}")]
    StorageFull(String),
    /// Too many commands are waiting.
    #[error("busy: {0}")]
    Busy(String),
}

/// An operation for the driver to run against its [`Storage`](crate::Storage).
///
/// Drivers must run storage operations in the order they are emitted (a read issued
/// after a write sees it) and report completions; durability must also be in order.
#[derive(Debug)]
pub enum StorageOp {
    /// Read every entry under a prefix.
    LoadRange {
        /// The prefix.
        prefix: Vec<String>,
    },
    /// Read one key.
    Load {
        /// The key.
        key: StorageKey,
    },
    /// Apply an atomic, durable batch.
    Write(WriteBatch),
}

/// The result of a [`StorageOp`].
#[derive(Debug)]
pub enum StorageResult {
    /// Entries of a `LoadRange`.
    Range(Vec<(StorageKey, Vec<u8>)>),
    /// The value of a `Load`.
    Value(Option<Vec<u8>>),
    /// A `Write` is durable.
    Written,
}

/// Something the driver must do, or be told.
#[derive(Debug)]
pub enum Output {
    /// Send a frame on a connection.
    Send {
        /// Which connection.
        conn: ConnectionId,
        /// The encoded wire message.
        bytes: Vec<u8>,
    },
    /// Close a connection (protocol violation, error, or the peer left).
    Disconnect {
        /// Which connection.
        conn: ConnectionId,
        /// Why, for logs and bans.
        reason: String,
        /// Whether the peer misbehaved (the driver may ban it for a while).
        misbehaved: bool,
    },
    /// Run a storage operation and report back with `id`.
    Storage {
        /// Echo this in the completion.
        id: StorageOpId,
        /// What to do.
        op: StorageOp,
    },
    /// Deliver [`Input::Tick`] at (or after) this time in ms.
    ScheduleTick {
        /// When.
        at_ms: u64,
    },
    /// Answer a command.
    Reply {
        /// The command's id.
        id: CommandId,
        /// The answer.
        result: Result<Reply, RepoError>,
    },
    /// Tell the application something.
    Event(Event),
}

/// Where a change came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOrigin {
    /// The local application.
    Local,
    /// A peer, over this connection.
    Remote(ConnectionId),
    /// Another writer of a shared store ([`Input::StorageChanged`]).
    Storage,
}

/// Something the application may want to know.
#[derive(Debug)]
pub enum Event {
    /// Catalog and storage id are loaded; the repo serves commands and peers.
    Ready {
        /// This repo's storage id.
        storage_id: StorageId,
        /// How many documents the catalog holds (tombstones included).
        documents: usize,
    },
    /// A peer finished the handshake.
    PeerConnected {
        /// Which connection.
        conn: ConnectionId,
        /// Its automerge-repo peer id.
        peer: PeerId,
        /// Its storage id, if it has one.
        storage_id: Option<StorageId>,
        /// Whether it speaks peerdoc's extensions.
        peerdoc: bool,
    },
    /// A peer's connection closed.
    PeerDisconnected {
        /// Which connection.
        conn: ConnectionId,
        /// Its peer id, if the handshake had finished.
        peer: Option<PeerId>,
    },
    /// A document changed (visible now; local changes are durable when replied to).
    DocumentChanged {
        /// Which.
        doc: DocumentId,
        /// New heads.
        heads: Vec<ChangeHash>,
        /// What changed.
        patches: Vec<Patch>,
        /// Who changed it.
        origin: ChangeOrigin,
    },
    /// A document appeared (created here or received from a peer).
    DocumentCreated {
        /// Which.
        doc: DocumentId,
        /// Who created it.
        origin: ChangeOrigin,
    },
    /// A document was deleted (here or by a peer's tombstone).
    DocumentDeleted {
        /// Which.
        doc: DocumentId,
        /// Who deleted it.
        origin: ChangeOrigin,
    },
    /// A conflict appeared for the first time and was logged.
    ConflictDetected {
        /// In which document.
        doc: DocumentId,
        /// The log entry.
        record: ConflictRecord,
    },
    /// Stored data of a document did not load; the rest did.
    DocumentDamaged {
        /// Which.
        doc: DocumentId,
        /// What was wrong.
        reason: String,
    },
    /// A document's sync with a peer went quiet: both sides have the same heads.
    DocumentSynced {
        /// Which.
        doc: DocumentId,
        /// With whom.
        conn: ConnectionId,
        /// The shared heads.
        heads: Vec<ChangeHash>,
    },
    /// Whole-repo reconciliation with a peer finished.
    ReconcileFinished {
        /// With whom.
        conn: ConnectionId,
        /// Documents found to differ.
        differences: usize,
        /// Reconciliation payloads received.
        rounds: u32,
    },
    /// Ephemeral data from a peer.
    Ephemeral {
        /// About which document.
        doc: DocumentId,
        /// From whom.
        from: PeerId,
        /// Opaque bytes.
        data: Vec<u8>,
    },
    /// A peer reported the heads some storage holds for a document.
    RemoteHeads {
        /// Which document.
        doc: DocumentId,
        /// Whose storage.
        storage_id: StorageId,
        /// Its heads (as sent).
        heads: Vec<String>,
        /// When the reporter saw them.
        timestamp: u64,
    },
    /// A storage write failed; affected work is retried or reported.
    StorageFailed {
        /// The error.
        error: StorageError,
    },
    /// Document metadata changed (priority, title, size).
    MetaChanged {
        /// Which.
        doc: DocumentId,
        /// The new metadata.
        meta: DocumentMeta,
    },
}
