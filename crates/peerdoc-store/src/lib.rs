//! peerdoc's sled-backed [`Storage`](peerdoc_core::Storage).
//!
//! [`SledStorage`] keeps automerge-repo's key layout (`[docId, "snapshot", hash]`, ...)
//! in one sled tree with an order-preserving key encoding ([`key`]), so a component
//! prefix read is a sled prefix scan. Every value is framed with a format byte and a
//! CRC-32 ([`frame`]); a value that fails verification is moved to a quarantine tree,
//! logged, and left out of reads ([`SledStorage::quarantined`] lists it). `write` applies
//! its batch atomically and returns only after a flush that covers it, and concurrent
//! writers share flushes ([`SledStorage::commit_stats`]).
//!
//! Durability is against a **process crash** by default; sled 0.34's flush is not a
//! power-loss barrier, and [`Durability::Power`] adds the `fsync`s that make it one. A
//! commit ledger beside sled's files notices on open when sled's recovery dropped
//! acknowledged writes ([`SledStorage::rollback`]). `docs/storage.md` has the details,
//! the byte layout and the usage maths.
//!
//! ```
//! use peerdoc_core::{Storage, StorageKey, WriteBatch};
//! use peerdoc_store::{SledConfig, SledStorage};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = std::env::temp_dir().join(format!("peerdoc-store-doctest-{}", std::process::id()));
//! let store = SledStorage::open(&dir, SledConfig::default())?;
//!
//! let key = StorageKey::new(["2ZXwKc3jS1pXDD6ruZ4Fr4Q4Gh1P", "incremental", "ab12"]);
//! let mut batch = WriteBatch::new();
//! batch.put(key.clone(), b"change bytes".to_vec());
//! store.write(batch)?; // durable against a process crash once this returns
//!
//! assert_eq!(store.get(&key)?, Some(b"change bytes".to_vec()));
//! let doc_entries = store.range(&["2ZXwKc3jS1pXDD6ruZ4Fr4Q4Gh1P".to_string()])?;
//! assert_eq!(doc_entries.len(), 1);
//! assert!(store.quarantined()?.is_empty());
//!
//! drop(store);
//! std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

mod config;
mod copy;
mod crypt;
mod error;
pub mod frame;
mod group_commit;
pub mod key;
mod ledger;
mod quarantine;
mod scan;
mod sled_storage;
mod store_copy;
mod usage;

pub use config::{Durability, SledConfig, SpaceMode};
pub use copy::CopyReport;
pub use crypt::StoreSecret;
pub use error::StoreError;
pub use frame::CorruptionKind;
pub use group_commit::CommitStats;
pub use ledger::RollbackReport;
pub use quarantine::QuarantinedChunk;
pub use scan::{Page, ScanStorage, check_scan_pages};
pub use sled_storage::{RecordedRollback, SledStorage};
pub use store_copy::{
    CopyLimits, CopyStage, CopySummary, Tally, copy_marker_key, copy_store, unfinished_copy,
};
pub use usage::{DocUsage, KeyClass, StorageUsage, classify, directory_bytes};
