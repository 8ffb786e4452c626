//! A store shared with other writers: several cloud nodes on one PostgreSQL database.
//!
//! Each node's engine keeps documents in memory, so a change another node commits is
//! invisible to it until it reads the store again. The store's driver tells it which
//! document changed ([`Input::StorageChanged`](super::Input::StorageChanged), from
//! PostgreSQL's `LISTEN/NOTIFY`), and the engine reads that document's chunks, conflict
//! log and catalog record back:
//!
//! - **Loaded:** the chunks it does not know are applied (`load_incremental` skips the
//!   changes it has). The changes are already durable (the notice comes after their
//!   transaction committed), so when nothing of ours was waiting to be saved the
//!   durable heads simply move; otherwise a save follows, as after any change. Peers
//!   hear of the new heads as after a local change, and the application gets
//!   `DocumentChanged` with origin [`ChangeOrigin::Storage`].
//! - **Not loaded:** the catalog takes the stored record (heads, title, priority); when
//!   peers are connected the document is loaded and pushed to them, so a device on
//!   this node sees an edit made through another within a round trip.
//! - **Deleted** there: the tombstone is applied here too (and spread to peers).
//!
//! Missed notices (`doc: None`) are caught up from the catalog: every stored record
//! that differs from ours, or that was written since shortly before the last notice
//! this node heard (a record is rewritten whole by its last writer, so one may name
//! only that writer's heads while the chunks hold more), is read back.
//!
//! Nothing here writes unless something of ours was unsaved, so notices do not echo
//! between nodes. One refresh per document is in flight; a notice that arrives during
//! it reads again once it completes. Chunk keys are content hashes, so two nodes writing
//! one change write one key, and a compaction only deletes chunks whose changes the
//! node holds (its own writes and what it read back), which its snapshot then covers.

use std::collections::BTreeSet;

use crate::WriteBatch;
use crate::ids::DocumentId;
use crate::persist::{self, ConflictRecord, DocumentMeta};
use crate::storage::{StorageError, StorageKey};

use super::{ChangeOrigin, Event, Purpose, Repo, StorageOp, StorageResult, Waiter};

/// How far before the last notice a catch-up looks for records written meanwhile
/// (clock differences between cloud nodes, and a notice in flight when the listener's
/// connection broke).
const CATCH_UP_SLACK_MS: u64 = 5 * 60 * 1000;

/// One document being read back.
#[derive(Debug, Default)]
pub(super) struct Refresh {
    chunks: Option<Vec<(StorageKey, Vec<u8>)>>,
    conflicts: Option<Vec<(StorageKey, Vec<u8>)>>,
    record: Option<Option<Vec<u8>>>,
    /// Another notice arrived while this one was reading.
    again: bool,
}

/// Which part of a refresh a storage read was.
#[derive(Debug, Clone, Copy)]
pub(super) enum RefreshPart {
    Chunks,
    Conflicts,
    Record,
}

impl Repo {
    /// Handles [`Input::StorageChanged`](super::Input::StorageChanged).
    pub(super) fn storage_changed(&mut self, doc: Option<DocumentId>) {
        let previous = self.last_notice_ms.replace(self.now_ms);
        match doc {
            Some(doc) => self.refresh(doc),
            None if self.refreshing_catalog.is_some() => {}
            None => {
                // Writers' clocks differ: look further back than the last notice.
                let since = previous.unwrap_or(0).saturating_sub(CATCH_UP_SLACK_MS);
                self.refreshing_catalog = Some(since);
                self.storage(
                    Purpose::RefreshCatalog,
                    StorageOp::LoadRange {
                        prefix: persist::meta_prefix(),
                    },
                );
            }
        }
    }

    fn refresh(&mut self, doc: DocumentId) {
        if let Some(refresh) = self.refreshing.get_mut(&doc) {
            refresh.again = true;
            return;
        }
        self.refreshing.insert(doc, Refresh::default());
        self.storage(
            Purpose::Refresh(doc, RefreshPart::Chunks),
            StorageOp::LoadRange {
                prefix: persist::document_prefix(&doc),
            },
        );
        self.storage(
            Purpose::Refresh(doc, RefreshPart::Conflicts),
            StorageOp::LoadRange {
                prefix: persist::conflicts_prefix(&doc),
            },
        );
        self.storage(
            Purpose::Refresh(doc, RefreshPart::Record),
            StorageOp::Load {
                key: persist::meta_key(&doc),
            },
        );
    }

    /// Every stored record that differs from the catalog is refreshed.
    pub(super) fn catalog_refreshed(&mut self, result: Result<StorageResult, StorageError>) {
        let since = self.refreshing_catalog.take().unwrap_or(0);
        let entries = match result {
            Ok(StorageResult::Range(entries)) => entries,
            Ok(_) => Vec::new(),
            Err(error) => {
                tracing::warn!(%error, "reading the shared store's catalog again failed");
                self.event(Event::StorageFailed { error });
                return;
            }
        };
        let mut changed = Vec::new();
        for (key, value) in entries {
            let (Some(id), Ok(stored)) = (
                key.components()
                    .get(2)
                    .and_then(|s| s.parse::<DocumentId>().ok()),
                DocumentMeta::decode(&value),
            ) else {
                continue;
            };
            let differs = stored.updated_ms >= since
                || self.catalog.get(&id).is_none_or(|ours| {
                    ours.deleted != stored.deleted
                        || sorted(&ours.heads) != sorted(&stored.heads)
                        || ours.title != stored.title
                        || ours.priority != stored.priority
                });
            if differs {
                changed.push(id);
            }
        }
        tracing::debug!(documents = changed.len(), "shared store read again");
        for doc in changed {
            self.refresh(doc);
        }
    }

    pub(super) fn refresh_part_completed(
        &mut self,
        doc: DocumentId,
        part: RefreshPart,
        result: Result<StorageResult, StorageError>,
    ) {
        let Some(refresh) = self.refreshing.get_mut(&doc) else {
            return;
        };
        match (part, result) {
            (RefreshPart::Chunks, Ok(StorageResult::Range(entries))) => {
                refresh.chunks = Some(entries);
            }
            (RefreshPart::Conflicts, Ok(StorageResult::Range(entries))) => {
                refresh.conflicts = Some(entries);
            }
            (RefreshPart::Record, Ok(StorageResult::Value(value))) => refresh.record = Some(value),
            (_, Ok(_)) => {}
            (_, Err(error)) => {
                // The other node's write is in the store; the next notice (or the next
                // load of the document) reads it. Nothing of ours is at stake.
                tracing::warn!(%error, doc = %doc, "reading a document another node changed failed");
                self.refreshing.remove(&doc);
                self.event(Event::StorageFailed { error });
                return;
            }
        }
        if refresh.chunks.is_none() || refresh.conflicts.is_none() || refresh.record.is_none() {
            return;
        }
        let refresh = self.refreshing.remove(&doc).unwrap_or_default();
        let again = refresh.again;
        self.apply_refresh(doc, refresh);
        if again {
            self.refresh(doc);
        }
    }

    fn apply_refresh(&mut self, doc_id: DocumentId, mut refresh: Refresh) {
        if let Some(ours) = self.catalog.get(&doc_id).filter(|m| m.deleted) {
            self.keep_deleted(doc_id, ours.clone(), refresh);
            return;
        }
        let Some(stored) = refresh
            .record
            .take()
            .flatten()
            .and_then(|bytes| DocumentMeta::decode(&bytes).ok())
        else {
            // Chunks without a record are a write still being made (they land in one
            // transaction, so this is a document we know only from elsewhere): nothing
            // to name yet.
            return;
        };
        if stored.deleted {
            if !self.catalog.get(&doc_id).is_some_and(|m| m.deleted) {
                tracing::info!(doc = %doc_id, "deleted through another node");
                self.apply_tombstone(doc_id, ChangeOrigin::Storage, None);
            }
            return;
        }
        if self.docs.contains_key(&doc_id) {
            self.merge_loaded(doc_id, &stored, refresh);
            return;
        }
        if self.loading.contains_key(&doc_id) {
            // The load reads the store itself; what it read may predate this notice.
            if let Some(loading) = self.loading.get_mut(&doc_id) {
                loading.waiters.push(Waiter::Refresh);
            }
            return;
        }
        let created = !self.catalog.contains_key(&doc_id);
        // A record is written whole by its last writer: it may lack heads this node
        // wrote (the other node had not read them yet). Then only a load tells the
        // true heads, and it puts the record right (`finish_load`).
        let lost_ours = self
            .catalog
            .get(&doc_id)
            .is_some_and(|ours| ours.heads.iter().any(|h| !stored.heads.contains(h)));
        let ours = self.catalog.entry(doc_id).or_insert_with(|| stored.clone());
        if !created {
            *ours = stored;
        }
        let digest = ours.digest();
        self.items.insert(doc_id, digest);
        if created {
            self.event(Event::DocumentCreated {
                doc: doc_id,
                origin: ChangeOrigin::Storage,
            });
        }
        // Connected peers get the document now, not at their next reconnect.
        if lost_ours || self.conns.values().any(|c| c.is_ready()) {
            self.start_load(doc_id, Waiter::Push);
        }
    }

    /// A document deleted here that another node wrote to, not knowing yet (its notice
    /// of our tombstone was lost, or crossed its save): its record overwrote ours, and
    /// its chunks are back. A deleted document never comes back, so the tombstone is
    /// written again and the chunks go; the other node applies it on our notice.
    fn keep_deleted(&mut self, doc_id: DocumentId, ours: DocumentMeta, refresh: Refresh) {
        let stored_deleted = refresh
            .record
            .flatten()
            .and_then(|bytes| DocumentMeta::decode(&bytes).ok())
            .is_some_and(|m| m.deleted);
        let chunks: Vec<StorageKey> = refresh
            .chunks
            .unwrap_or_default()
            .into_iter()
            .map(|(key, _)| key)
            .filter(|key| {
                matches!(
                    key.components().get(1).map(String::as_str),
                    Some(persist::SNAPSHOT | persist::INCREMENTAL)
                )
            })
            .collect();
        if stored_deleted && chunks.is_empty() {
            return;
        }
        tracing::info!(doc = %doc_id, chunks = chunks.len(), "another node wrote to a deleted document; deleting it again");
        let mut batch = WriteBatch::new();
        for key in chunks {
            batch.delete(key);
        }
        batch.put(persist::meta_key(&doc_id), ours.encode());
        self.write(None, None, Vec::new(), batch);
        // Whatever else is under its prefix (sync states, conflict entries).
        self.sweeps.insert(doc_id);
    }

    /// Applies the chunks of a loaded document that it does not know yet.
    fn merge_loaded(&mut self, doc_id: DocumentId, stored: &DocumentMeta, refresh: Refresh) {
        let Some(doc) = self.docs.get_mut(&doc_id) else {
            return;
        };
        let before = doc.doc.get_heads();
        let known: BTreeSet<StorageKey> = doc.chunk_keys.iter().cloned().collect();
        let mut applied = Vec::new();
        for (key, value) in refresh.chunks.unwrap_or_default() {
            let kind = key.components().get(1).map(String::as_str);
            if !matches!(kind, Some(persist::SNAPSHOT | persist::INCREMENTAL))
                || known.contains(&key)
            {
                continue;
            }
            match doc.doc.load_incremental(&value) {
                Ok(_) => {
                    if kind == Some(persist::INCREMENTAL) {
                        doc.incremental_chunks += 1;
                    }
                    doc.chunk_bytes += value.len() as u64;
                    applied.push(key);
                }
                Err(error) => {
                    tracing::warn!(doc = %doc_id, key = %key, %error, "a chunk another node wrote does not load");
                }
            }
        }
        doc.chunk_keys.extend(applied);
        for (_, value) in refresh.conflicts.unwrap_or_default() {
            if let Ok(record) = ConflictRecord::decode(&value)
                && doc.conflict_ids.insert(record.identity())
            {
                doc.conflict_log.push(record);
            }
        }
        doc.conflict_log.sort_by_key(|r| r.seq);
        let after = doc.doc.get_heads();
        let clean = !doc.saving && doc.saved_heads == before && doc.durable_heads == before;
        if clean {
            // What was read is durable: it was committed before the notice was sent.
            doc.saved_heads = after.clone();
            doc.durable_heads = after.clone();
        }
        // Two nodes that each wrote a change before reading the other's leave the
        // record of whichever wrote last, naming only its own heads; the node that
        // reads both puts it right (the other node's refresh then finds nothing new).
        let record_short = clean && sorted(&stored.heads) != sorted_hashes(&after);
        let conflicts = doc.conflict_log.len() as u64;
        if let Some(meta) = self.catalog.get_mut(&doc_id) {
            meta.title = stored.title.clone();
            meta.priority = stored.priority;
            meta.conflicts_logged = meta.conflicts_logged.max(conflicts);
            if stored.open_conflicts.is_some() {
                meta.open_conflicts = stored.open_conflicts.clone();
            }
            if clean {
                meta.set_heads(&after);
                meta.stored_bytes = stored.stored_bytes;
                meta.updated_ms = meta.updated_ms.max(stored.updated_ms);
                meta.last_actor = stored.last_actor.clone();
            }
            let digest = meta.digest();
            self.items.insert(doc_id, digest);
        }
        if record_short {
            self.write_record(doc_id, Vec::new());
        }
        if after == before {
            return;
        }
        let patches = self
            .docs
            .get(&doc_id)
            .map(|d| d.doc.diff(&before, &after))
            .unwrap_or_default();
        if let Some(doc) = self.docs.get_mut(&doc_id) {
            for session in doc.sessions.values_mut() {
                session.in_sync = false;
            }
        }
        if !clean {
            // Something of ours was unsaved or being saved: the next save holds both.
            self.save_document(doc_id, WriteBatch::new(), Vec::new());
        }
        self.touch(&doc_id);
        self.deliver_wanted(doc_id);
        self.event(Event::DocumentChanged {
            doc: doc_id,
            heads: after,
            patches,
            origin: ChangeOrigin::Storage,
        });
        self.push_to_peers(doc_id);
    }
}

fn sorted_hashes(heads: &[automerge::ChangeHash]) -> Vec<String> {
    let mut heads: Vec<String> = heads.iter().map(ToString::to_string).collect();
    heads.sort_unstable();
    heads
}

fn sorted(heads: &[String]) -> Vec<&str> {
    let mut heads: Vec<&str> = heads.iter().map(String::as_str).collect();
    heads.sort_unstable();
    heads
}
