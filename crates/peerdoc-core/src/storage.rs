//! The storage abstraction: a fallible, durable key/value store with prefix range reads
//! and atomic batches.
//!
//! Keys are arrays of strings, as in automerge-repo (`[docId, "snapshot", hash]`). A range
//! read by prefix matches whole components: `["a"]` matches `["a", "x"]` but not
//! `["ab"]`. Results come back in component-wise lexicographic order.
//!
//! Every backend must pass [`conformance::run_all`]; see `peerdoc-store` for the sled one.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;

pub mod conformance;

/// A storage key: a non-empty array of string components.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StorageKey(Vec<String>);

impl StorageKey {
    /// Builds a key from its components.
    pub fn new<I, S>(components: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self(components.into_iter().map(Into::into).collect())
    }

    /// The key's components.
    pub fn components(&self) -> &[String] {
        &self.0
    }

    /// Whether `prefix` matches this key's leading components.
    pub fn starts_with(&self, prefix: &[String]) -> bool {
        self.0.len() >= prefix.len() && self.0[..prefix.len()] == *prefix
    }
}

impl fmt::Debug for StorageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl fmt::Display for StorageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("/"))
    }
}

/// One operation of a [`WriteBatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    /// Insert or replace a value.
    Put {
        /// Where.
        key: StorageKey,
        /// What.
        value: Vec<u8>,
    },
    /// Remove a key (a no-op when absent).
    Delete {
        /// Which key.
        key: StorageKey,
    },
}

/// Puts and deletes applied all together or not at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    ops: Vec<WriteOp>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a put.
    pub fn put(&mut self, key: StorageKey, value: Vec<u8>) -> &mut Self {
        self.ops.push(WriteOp::Put { key, value });
        self
    }

    /// Adds a delete.
    pub fn delete(&mut self, key: StorageKey) -> &mut Self {
        self.ops.push(WriteOp::Delete { key });
        self
    }

    /// Appends another batch's operations after this one's.
    pub fn extend(&mut self, other: WriteBatch) {
        self.ops.extend(other.ops);
    }

    /// The operations, in order; a later operation on the same key wins.
    pub fn ops(&self) -> &[WriteOp] {
        &self.ops
    }

    /// Consumes the batch into its operations.
    pub fn into_ops(self) -> Vec<WriteOp> {
        self.ops
    }

    /// Whether the batch does nothing.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Bytes of keys and values the batch writes (a cost estimate).
    pub fn payload_bytes(&self) -> usize {
        self.ops
            .iter()
            .map(|op| match op {
                WriteOp::Put { key, value } => key_len(key) + value.len(),
                WriteOp::Delete { key } => key_len(key),
            })
            .sum()
    }
}

fn key_len(key: &StorageKey) -> usize {
    key.0.iter().map(|c| c.len() + 1).sum()
}

/// Why a storage operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The underlying medium failed (I/O error, ...).
    #[error("storage I/O failed: {0}")]
    Io(String),
    /// The disk is (nearly) full: the write was refused before it reached the store,
    /// which stays usable; writes succeed again once space is freed.
    #[error("storage full: {0}")]
    Full(String),
    /// A key was malformed (e.g. empty).
    #[error("invalid storage key {key}: {reason}")]
    InvalidKey {
        /// The offending key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The store was closed or poisoned by an earlier failure.
    #[error("storage is closed")]
    Closed,
}

/// A durable key/value store.
///
/// Contract (checked by [`conformance`]):
/// - `write` is atomic: after any crash either every op of the batch is visible or none;
/// - `write` is durable against a process crash once it returns `Ok` (this is what
///   "acknowledged" means in peerdoc);
/// - a batch's ops apply in order, so a later op on the same key wins;
/// - `range` returns exactly the keys whose leading components equal `prefix`, sorted;
/// - writes are visible to reads as soon as `write` returns;
/// - an empty key is rejected with [`StorageError::InvalidKey`].
pub trait Storage: Send + Sync {
    /// Reads one value.
    fn get(&self, key: &StorageKey) -> Result<Option<Vec<u8>>, StorageError>;

    /// Reads every entry under `prefix` (component-wise), in key order.
    fn range(&self, prefix: &[String]) -> Result<Vec<(StorageKey, Vec<u8>)>, StorageError>;

    /// Applies a batch atomically and durably.
    fn write(&self, batch: WriteBatch) -> Result<(), StorageError>;
}

impl<S: Storage + ?Sized> Storage for std::sync::Arc<S> {
    fn get(&self, key: &StorageKey) -> Result<Option<Vec<u8>>, StorageError> {
        (**self).get(key)
    }
    fn range(&self, prefix: &[String]) -> Result<Vec<(StorageKey, Vec<u8>)>, StorageError> {
        (**self).range(prefix)
    }
    fn write(&self, batch: WriteBatch) -> Result<(), StorageError> {
        (**self).write(batch)
    }
}

/// Rejects keys the contract forbids; backends call this before touching their medium.
pub fn validate_key(key: &StorageKey) -> Result<(), StorageError> {
    if key.0.is_empty() {
        return Err(StorageError::InvalidKey {
            key: key.to_string(),
            reason: "a key needs at least one component".into(),
        });
    }
    Ok(())
}

/// An in-memory [`Storage`]: for tests, the simulator and ephemeral peers.
#[derive(Debug, Default)]
pub struct MemoryStorage {
    entries: Mutex<BTreeMap<StorageKey, Vec<u8>>>,
}

impl MemoryStorage {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of every entry (for tests and the simulator's crash model).
    pub fn snapshot(&self) -> BTreeMap<StorageKey, Vec<u8>> {
        self.lock().clone()
    }

    /// A store holding exactly `entries`.
    pub fn from_entries(entries: BTreeMap<StorageKey, Vec<u8>>) -> Self {
        Self {
            entries: Mutex::new(entries),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<StorageKey, Vec<u8>>> {
        // A panic while holding the lock cannot leave the map half-written (every
        // mutation below is a single map call per op), so the poison flag is not needed.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Storage for MemoryStorage {
    fn get(&self, key: &StorageKey) -> Result<Option<Vec<u8>>, StorageError> {
        validate_key(key)?;
        Ok(self.lock().get(key).cloned())
    }

    fn range(&self, prefix: &[String]) -> Result<Vec<(StorageKey, Vec<u8>)>, StorageError> {
        let start = StorageKey(prefix.to_vec());
        Ok(self
            .lock()
            .range(start..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn write(&self, batch: WriteBatch) -> Result<(), StorageError> {
        for op in batch.ops() {
            match op {
                WriteOp::Put { key, .. } | WriteOp::Delete { key } => validate_key(key)?,
            }
        }
        let mut map = self.lock();
        for op in batch.into_ops() {
            match op {
                WriteOp::Put { key, value } => {
                    map.insert(key, value);
                }
                WriteOp::Delete { key } => {
                    map.remove(&key);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_storage_passes_conformance() {
        conformance::run_all(&|| MemoryStorage::new());
    }
}
