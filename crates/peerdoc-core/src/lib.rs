//! peerdoc's core: identifiers, the storage abstraction, the wire protocol and the sync
//! engine, with no IO and no async runtime.

#![deny(missing_docs)]

pub mod ids;
pub mod model;
pub mod persist;
pub mod reconcile;
pub mod repo;
pub mod storage;
pub mod wire;

pub use ids::{ConnectionId, DocumentId, DocumentIdError, HeadsDigest, PeerId, StorageId};
pub use storage::{MemoryStorage, Storage, StorageError, StorageKey, WriteBatch, WriteOp};
