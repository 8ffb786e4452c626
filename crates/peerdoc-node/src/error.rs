//! [`NodeError`]: the one error type of this crate.

use std::path::PathBuf;

use peerdoc_core::DocumentId;
use peerdoc_core::repo::RepoError;

/// Everything an embedder can be told went wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// No such document on this node.
    #[error("document {0} not found")]
    DocumentNotFound(DocumentId),
    /// The document was deleted (here or by a peer); deletion is final.
    #[error("document {0} was deleted")]
    DocumentDeleted(DocumentId),
    /// The edit was invalid; nothing was changed.
    #[error("invalid change: {0}")]
    InvalidChange(String),
    /// `read_at` named heads this document does not contain.
    #[error("unknown heads for document {0}")]
    UnknownHeads(DocumentId),
    /// `import` was given bytes that are not an automerge document.
    #[error("not an automerge document: {0}")]
    InvalidDocument(String),
    /// Too many commands are waiting; retry later.
    #[error("node busy: {0}")]
    Busy(String),
    /// A storage operation failed. A change that fails this way is in memory but was
    /// not acknowledged as durable; the engine retries saving it.
    #[error("storage failed: {0}")]
    Storage(String),
    /// The disk is full: the write was refused and not acknowledged; the store stays
    /// usable (reads work) and writes succeed again once space is freed.
    #[error("{0}")]
    StorageFull(String),
    /// The node stopped, but the store may not hold every acknowledged write: its final
    /// flush failed, or its thread died with writes in flight.
    #[error("the node stopped uncleanly: {0}; the last writes may not be on disk")]
    UncleanStop(String),
    /// Another node (in this process or another one) has this data directory open.
    #[error(
        "data directory {path} is in use by another peerdoc node (in this process or \
         another); stop that node or choose another directory ({detail})"
    )]
    DataDirLocked {
        /// The data directory.
        path: PathBuf,
        /// What the store reported.
        detail: String,
    },
    /// The data directory could not be created or read.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The data directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The store could not be opened (damaged, lost contents, I/O).
    #[error("opening the store failed: {0}")]
    StoreOpen(peerdoc_store::StoreError),
    /// The PostgreSQL database could not be opened (unreachable, login refused,
    /// read-only at first use); the message never holds the password.
    #[error("opening the database failed: {0}")]
    DatabaseOpen(String),
    /// The store holds an unfinished `peerdoc store copy` (its marker): part of
    /// another store, which must not be served.
    #[error(
        "{store} holds an unfinished copy ({marker}): run that `peerdoc store copy` again, \
         which starts it over; a daemon does not start on part of a store"
    )]
    UnfinishedCopy {
        /// Which store (the sled directory, or the database without its password).
        store: String,
        /// What the copy's marker says.
        marker: String,
    },
    /// The network layer failed (identity, configuration, listen, dial).
    #[error("network: {0}")]
    Net(#[from] peerdoc_net::NetError),
    /// A configuration value is out of range.
    #[error("invalid node configuration: {0}")]
    InvalidConfig(String),
    /// The engine could not start (its startup reads failed).
    #[error("the node failed to start: {0}")]
    StartFailed(String),
    /// An attached connection was closed by the node (see
    /// [`AttachedConnection::close_reason`](crate::AttachedConnection::close_reason)).
    #[error("the attached connection is closed")]
    ConnectionClosed,
    /// The node is shutting down or has stopped; the command was not run.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// The engine answered a command with a reply of the wrong kind (a bug).
    #[error("unexpected reply from the engine to {command}")]
    UnexpectedReply {
        /// The command that was answered.
        command: &'static str,
    },
}

impl From<RepoError> for NodeError {
    fn from(error: RepoError) -> Self {
        match error {
            RepoError::DocumentNotFound(doc) => Self::DocumentNotFound(doc),
            RepoError::DocumentDeleted(doc) => Self::DocumentDeleted(doc),
            RepoError::InvalidChange(reason) => Self::InvalidChange(reason),
            RepoError::UnknownHeads(doc) => Self::UnknownHeads(doc),
            RepoError::InvalidDocument(reason) => Self::InvalidDocument(reason),
            RepoError::Storage(reason) => Self::Storage(reason),
            RepoError::StorageFull(reason) => Self::StorageFull(reason),
            RepoError::Busy(reason) => Self::Busy(reason),
        }
    }
}
