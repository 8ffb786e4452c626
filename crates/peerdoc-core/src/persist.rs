//! How documents and peerdoc's own records are laid out in a [`Storage`](crate::Storage).
//!
//! automerge-repo's layout for document data, so that stores stay interoperable:
//!
//! | key | value |
//! |---|---|
//! | `[docId, "snapshot", headsHash]` | `Automerge::save()` of the document at those heads |
//! | `[docId, "incremental", chunkHash]` | `save_after(previous heads)`: the changes since the last save |
//! | `[docId, "sync-state", storageId]` | `sync::State::encode()` for one remote storage id |
//! | `["storage-adapter-id"]` | this repo's [`StorageId`] |
//!
//! peerdoc's own records live under `["peerdoc", ...]`:
//!
//! | key | value |
//! |---|---|
//! | `["peerdoc", "meta", docId]` | [`DocumentMeta`] as JSON (heads, priority, tombstone, sizes) |
//! | `["peerdoc", "conflicts", docId, seq]` | one [`ConflictRecord`] as JSON (20-digit zero-padded seq) |
//!
//! A compaction writes the snapshot and deletes every chunk it replaces in **one atomic
//! batch**, so a crash at any point leaves either the old chunks or the new snapshot.

use std::collections::BTreeMap;

use automerge::{Automerge, ChangeHash, sync};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids::{DocumentId, HeadsDigest, StorageId};
use crate::storage::{StorageKey, WriteBatch};

/// Every automerge chunk (document, change or bundle) starts with these bytes.
const AUTOMERGE_MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];

/// Second key component of a snapshot chunk.
pub const SNAPSHOT: &str = "snapshot";
/// Second key component of an incremental chunk.
pub const INCREMENTAL: &str = "incremental";
/// Second key component of a persisted sync state.
pub const SYNC_STATE: &str = "sync-state";
/// First key component of peerdoc's own records.
pub const PEERDOC: &str = "peerdoc";

/// The key holding this repo's storage id (automerge-repo's name for it).
pub fn storage_id_key() -> StorageKey {
    StorageKey::new(["storage-adapter-id"])
}

/// Every key of one document's data (chunks and sync states) starts with this.
pub fn document_prefix(doc: &DocumentId) -> Vec<String> {
    vec![doc.to_string()]
}

/// The prefix under which all [`DocumentMeta`] records live.
pub fn meta_prefix() -> Vec<String> {
    vec![PEERDOC.into(), "meta".into()]
}

/// The key of a document's [`DocumentMeta`].
pub fn meta_key(doc: &DocumentId) -> StorageKey {
    StorageKey::new([PEERDOC.to_string(), "meta".into(), doc.to_string()])
}

/// The prefix of a document's conflict log.
pub fn conflicts_prefix(doc: &DocumentId) -> Vec<String> {
    vec![PEERDOC.into(), "conflicts".into(), doc.to_string()]
}

/// The key of one conflict log entry.
pub fn conflict_key(doc: &DocumentId, seq: u64) -> StorageKey {
    let mut parts = conflicts_prefix(doc);
    parts.push(format!("{seq:020}"));
    StorageKey::new(parts)
}

/// The key of a snapshot of `doc` at `heads`.
pub fn snapshot_key(doc: &DocumentId, heads: &[ChangeHash]) -> StorageKey {
    let mut sorted = heads.to_vec();
    sorted.sort();
    let mut hasher = Sha256::new();
    for h in &sorted {
        hasher.update(h.0);
    }
    StorageKey::new([
        doc.to_string(),
        SNAPSHOT.into(),
        hex::encode(hasher.finalize()),
    ])
}

/// The key of an incremental chunk, named by the hash of its bytes.
pub fn incremental_key(doc: &DocumentId, chunk: &[u8]) -> StorageKey {
    StorageKey::new([
        doc.to_string(),
        INCREMENTAL.into(),
        hex::encode(Sha256::digest(chunk)),
    ])
}

/// The key of the sync state shared with the peer whose storage id is `storage`.
pub fn sync_state_key(doc: &DocumentId, storage: &StorageId) -> StorageKey {
    StorageKey::new([doc.to_string(), SYNC_STATE.into(), storage.to_string()])
}

/// What peerdoc remembers about a document without loading it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentMeta {
    /// Heads as of the last durable write (hex change hashes).
    pub heads: Vec<String>,
    /// Sync priority: higher syncs first.
    #[serde(default)]
    pub priority: i32,
    /// A human title, if the application set one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Set once the document is deleted; a deleted document never comes back.
    #[serde(default)]
    pub deleted: bool,
    /// Milliseconds since the epoch of the first write.
    #[serde(default)]
    pub created_ms: u64,
    /// Milliseconds since the epoch of the latest write.
    #[serde(default)]
    pub updated_ms: u64,
    /// Bytes of stored chunks (snapshot + incrementals) at the last write.
    #[serde(default)]
    pub stored_bytes: u64,
    /// What each cloud (by storage id) last confirmed holding of this document.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub receipts: BTreeMap<String, CloudReceipt>,
    /// Conflicts logged for this document (its conflict log's length), so a summary of
    /// the documents with conflicts needs no document loads.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub conflicts_logged: u64,
    /// The actor (hex) of the newest change among the heads: who changed it last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_actor: Option<String>,
    /// Where the document holds concurrent values now (JSON pointers, at most
    /// [`MAX_OPEN_CONFLICT_PATHS`]), kept up to date on every change of a document that
    /// has or gets conflicts, so a summary of open conflicts needs no loads. `None`:
    /// none open if `conflicts_logged` is 0, else not known (metadata written before
    /// this was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_conflicts: Option<OpenConflicts>,
}

/// Open conflicts kept in a document's metadata (see [`DocumentMeta::open_conflicts`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenConflicts {
    /// How many places hold concurrent values.
    pub count: u64,
    /// The first [`MAX_OPEN_CONFLICT_PATHS`] of them, as JSON pointers.
    pub paths: Vec<String>,
}

/// Open conflict paths kept in a document's metadata at most.
pub const MAX_OPEN_CONFLICT_PATHS: usize = 16;

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A cloud's confirmation that it holds a document at some heads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudReceipt {
    /// The heads both sides had when the cloud confirmed them (hex, sorted).
    pub heads: Vec<String>,
    /// When the confirmation arrived, ms since the epoch.
    pub at_ms: u64,
    /// Whether the cloud confirms only what it stored durably (a peerdoc cloud does;
    /// a stock automerge-repo sync server reports heads before it writes them).
    pub durable: bool,
    /// What the cloud's stored writes survive, as it declared when it connected;
    /// `None` from a cloud that did not say (older peerdoc, stock servers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub durability: Option<CloudDurability>,
}

/// What a peerdoc cloud's stored writes survive (its `storage.durability`), declared
/// in its handshake and kept with each receipt it issues.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloudDurability {
    /// A crash of the cloud's process, not a power cut of its machine.
    Process,
    /// A power cut too: it `fsync`s before it confirms.
    Power,
}

impl CloudDurability {
    /// `process` or `power`, as on the wire and in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Process => "process",
            Self::Power => "power",
        }
    }

    /// The value named `text`; `None` for a name this version does not know.
    pub fn from_name(text: &str) -> Option<Self> {
        match text {
            "process" => Some(Self::Process),
            "power" => Some(Self::Power),
            _ => None,
        }
    }
}

/// How far a document is covered by cloud receipts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReceiptStatus {
    /// A cloud that stores before it confirms holds everything this device has.
    Confirmed,
    /// Only a stock sync server reported holding everything; it may not have written it.
    Reported,
    /// This device may hold changes no cloud has confirmed.
    Unconfirmed,
    /// Deleted here: nothing left to lose.
    Deleted,
}

impl DocumentMeta {
    /// Metadata for a new, empty document.
    pub fn new(now_ms: u64, priority: i32) -> Self {
        Self {
            heads: Vec::new(),
            priority,
            title: None,
            deleted: false,
            created_ms: now_ms,
            updated_ms: now_ms,
            stored_bytes: 0,
            receipts: BTreeMap::new(),
            conflicts_logged: 0,
            last_actor: None,
            open_conflicts: None,
        }
    }

    /// Whether some cloud confirmed holding this document at exactly its current heads.
    pub fn receipt_status(&self) -> ReceiptStatus {
        if self.deleted {
            return ReceiptStatus::Deleted;
        }
        match self.current_receipt() {
            Some(receipt) if receipt.durable => ReceiptStatus::Confirmed,
            Some(_) => ReceiptStatus::Reported,
            None => ReceiptStatus::Unconfirmed,
        }
    }

    /// The best receipt for the current heads: a durable one if any, else the newest.
    pub fn current_receipt(&self) -> Option<&CloudReceipt> {
        self.receipts
            .values()
            .filter(|r| self.is_current(r))
            .max_by_key(|r| (r.durable, r.at_ms))
    }

    /// Whether `receipt` confirms this document exactly as it is here.
    pub fn is_current(&self, receipt: &CloudReceipt) -> bool {
        let mut ours = self.heads.clone();
        ours.sort();
        receipt.heads == ours
    }

    /// The heads as change hashes (unparseable entries are skipped).
    pub fn change_heads(&self) -> Vec<ChangeHash> {
        self.heads.iter().filter_map(|h| h.parse().ok()).collect()
    }

    /// Replaces the recorded heads.
    pub fn set_heads(&mut self, heads: &[ChangeHash]) {
        self.heads = heads.iter().map(ToString::to_string).collect();
    }

    /// The reconciliation digest: [`HeadsDigest::TOMBSTONE`] once deleted.
    pub fn digest(&self) -> HeadsDigest {
        if self.deleted {
            HeadsDigest::TOMBSTONE
        } else {
            HeadsDigest::of(&self.change_heads())
        }
    }

    /// Serialises for storage.
    pub fn encode(&self) -> Vec<u8> {
        // Serialising a struct of strings and integers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a stored record.
    pub fn decode(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// One entry of a document's conflict log: a conflict as first seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConflictRecord {
    /// Position in the document's log.
    pub seq: u64,
    /// JSON pointer of the conflicted field.
    pub path: String,
    /// When this device first saw the conflict (ms since epoch).
    pub detected_ms: u64,
    /// Every value present when it was seen, the automatic winner flagged.
    pub values: Vec<ConflictRecordValue>,
}

/// One of the values of a logged conflict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConflictRecordValue {
    /// The value as JSON.
    pub value: serde_json::Value,
    /// The actor that wrote it (hex).
    pub actor: String,
    /// The change that wrote it (hex), when found.
    pub change: Option<String>,
    /// The writing change's timestamp (seconds since the epoch, automerge's unit).
    pub time: i64,
    /// Whether automerge picked this value.
    pub winner: bool,
}

impl ConflictRecord {
    /// A key that is equal for the same conflict seen twice (same field, same writers).
    pub fn identity(&self) -> String {
        let mut writers: Vec<String> = self
            .values
            .iter()
            .map(|v| format!("{}@{}", v.actor, v.change.as_deref().unwrap_or("")))
            .collect();
        writers.sort();
        format!("{}|{}", self.path, writers.join(","))
    }

    /// Serialises for storage.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a stored record.
    pub fn decode(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

/// A document rebuilt from its stored chunks.
#[derive(Debug)]
pub struct LoadedDocument {
    /// The document.
    pub doc: Automerge,
    /// Keys of the chunks (snapshots and incrementals) it was built from.
    pub chunk_keys: Vec<StorageKey>,
    /// How many of those are incremental.
    pub incremental_chunks: usize,
    /// Total bytes of those chunks.
    pub chunk_bytes: u64,
    /// Persisted sync states by remote storage id (undecodable ones are dropped:
    /// a fresh state only costs a bigger first sync message).
    pub sync_states: BTreeMap<StorageId, sync::State>,
    /// Chunks that did not decode, with the reason; the rest of the document loaded.
    pub damaged: Vec<(StorageKey, String)>,
}

/// Rebuilds a document from every entry under [`document_prefix`].
///
/// All chunks are loaded in one call when they are sound (automerge applies a batch of
/// changes far faster than one at a time). If that fails, each chunk is tried on its own
/// and the ones that fail are reported in [`LoadedDocument::damaged`].
pub fn load_document(entries: Vec<(StorageKey, Vec<u8>)>) -> LoadedDocument {
    let mut chunk_keys = Vec::new();
    let mut snapshots = Vec::new();
    let mut incrementals = Vec::new();
    let mut sync_states = BTreeMap::new();
    let mut chunk_bytes = 0u64;
    for (key, value) in entries {
        match key.components().get(1).map(String::as_str) {
            Some(SNAPSHOT) => {
                chunk_bytes += value.len() as u64;
                snapshots.push((key, value));
            }
            Some(INCREMENTAL) => {
                chunk_bytes += value.len() as u64;
                incrementals.push((key, value));
            }
            Some(SYNC_STATE) => {
                if let (Some(storage), Ok(state)) =
                    (key.components().get(2), sync::State::decode(&value))
                {
                    sync_states.insert(StorageId::new(storage.clone()), state);
                }
            }
            _ => {}
        }
    }
    let incremental_chunks = incrementals.len();
    let mut damaged = Vec::new();
    let mut all = Vec::new();
    for (key, value) in snapshots.into_iter().chain(incrementals) {
        chunk_keys.push(key.clone());
        // automerge silently skips trailing bytes that are not a chunk, so a chunk that
        // does not even start with the magic bytes is reported here.
        if value.starts_with(&AUTOMERGE_MAGIC) {
            all.push((key, value));
        } else {
            damaged.push((key, "not an automerge chunk (bad magic bytes)".to_string()));
        }
    }
    let mut joined = Vec::with_capacity(chunk_bytes as usize);
    for (_, value) in &all {
        joined.extend_from_slice(value);
    }
    let doc = match Automerge::load(&joined) {
        Ok(doc) => doc,
        Err(_) => {
            let mut doc = Automerge::new();
            for (key, value) in &all {
                if let Err(e) = doc.load_incremental(value) {
                    damaged.push((key.clone(), e.to_string()));
                }
            }
            doc
        }
    };
    LoadedDocument {
        doc,
        chunk_keys,
        incremental_chunks,
        chunk_bytes,
        sync_states,
        damaged,
    }
}

/// The batch that stores the changes made since `since` as one incremental chunk.
/// Returns `None` when there is nothing new.
pub fn save_incremental(
    doc_id: &DocumentId,
    doc: &Automerge,
    since: &[ChangeHash],
) -> Option<(StorageKey, Vec<u8>)> {
    if doc.get_heads().as_slice() == since {
        return None;
    }
    let chunk = doc.save_after(since);
    if chunk.is_empty() {
        return None;
    }
    Some((incremental_key(doc_id, &chunk), chunk))
}

/// The batch that replaces `replaced` chunks by one snapshot of `doc`, atomically.
/// Returns the batch and the snapshot's key and size.
pub fn compact(
    doc_id: &DocumentId,
    doc: &Automerge,
    replaced: &[StorageKey],
) -> (WriteBatch, StorageKey, u64) {
    let heads = doc.get_heads();
    let key = snapshot_key(doc_id, &heads);
    let bytes = doc.save();
    let size = bytes.len() as u64;
    let mut batch = WriteBatch::new();
    // Deletes first, then the put: if the snapshot's key equals a replaced one (same
    // heads), the put wins because a batch applies in order.
    for old in replaced {
        batch.delete(old.clone());
    }
    batch.put(key.clone(), bytes);
    (batch, key, size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{MemoryStorage, Storage};
    use automerge::transaction::Transactable;
    use automerge::{ROOT, ReadDoc};

    fn edit(doc: &mut Automerge, key: &str, value: i64) {
        let mut tx = doc.transaction();
        tx.put(ROOT, key, value).unwrap();
        tx.commit();
    }

    #[test]
    fn incrementals_then_compaction_round_trip() {
        let store = MemoryStorage::new();
        let id = DocumentId::from_bytes([3; 16]);
        let mut doc = Automerge::new();
        let mut saved: Vec<ChangeHash> = Vec::new();
        let mut keys = Vec::new();
        for i in 0..5 {
            edit(&mut doc, "n", i);
            let (key, chunk) = save_incremental(&id, &doc, &saved).unwrap();
            let mut b = WriteBatch::new();
            b.put(key.clone(), chunk);
            store.write(b).unwrap();
            keys.push(key);
            saved = doc.get_heads();
        }
        assert!(save_incremental(&id, &doc, &saved).is_none());
        let loaded = load_document(store.range(&document_prefix(&id)).unwrap());
        assert_eq!(loaded.doc.get_heads(), doc.get_heads());
        assert_eq!(loaded.incremental_chunks, 5);
        assert!(loaded.damaged.is_empty());

        let (batch, snap, _) = compact(&id, &doc, &loaded.chunk_keys);
        store.write(batch).unwrap();
        let entries = store.range(&document_prefix(&id)).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].0, snap);
        let loaded = load_document(entries);
        assert_eq!(loaded.doc.get_heads(), doc.get_heads());
        let (v, _) = loaded.doc.get(ROOT, "n").unwrap().unwrap();
        assert_eq!(v.as_i64(), Some(4));
    }

    #[test]
    fn damaged_chunk_is_reported_and_the_rest_loads() {
        let id = DocumentId::from_bytes([4; 16]);
        let mut a = Automerge::new();
        edit(&mut a, "a", 1);
        let good = a.save();
        let entries = vec![
            (snapshot_key(&id, &a.get_heads()), good),
            (incremental_key(&id, b"junk"), b"not automerge".to_vec()),
        ];
        let loaded = load_document(entries);
        assert_eq!(loaded.damaged.len(), 1);
        assert_eq!(loaded.doc.get_heads(), a.get_heads());
    }

    #[test]
    fn meta_round_trips_and_tombstone_digest() {
        let mut meta = DocumentMeta::new(5, 2);
        meta.set_heads(&[ChangeHash([9; 32])]);
        let back = DocumentMeta::decode(&meta.encode()).unwrap();
        assert_eq!(back, meta);
        assert_eq!(back.change_heads(), vec![ChangeHash([9; 32])]);
        meta.deleted = true;
        assert!(meta.digest().is_tombstone());
    }

    #[test]
    fn conflict_keys_sort_by_sequence() {
        let id = DocumentId::from_bytes([5; 16]);
        assert!(conflict_key(&id, 9) < conflict_key(&id, 10));
    }
}
