//! What happens when a document's content changes or it is deleted: save, log
//! conflicts, tell the application, push to peers.

use automerge::ReadDoc as _;

use crate::ids::DocumentId;
use crate::model;
use crate::persist::{
    self, ConflictRecord, ConflictRecordValue, DocumentMeta, MAX_OPEN_CONFLICT_PATHS, OpenConflicts,
};
use crate::{HeadsDigest, WriteBatch};

use super::{ChangeOrigin, CommandId, Event, Reply, Repo, RepoError};

impl Repo {
    /// A loaded document's heads moved: log new conflicts, save, notify, push.
    pub(super) fn doc_changed(
        &mut self,
        doc_id: DocumentId,
        patches: Vec<automerge::Patch>,
        origin: ChangeOrigin,
        replies: Vec<(CommandId, Reply)>,
    ) {
        let now = self.now_ms;
        let Some(doc) = self.docs.get_mut(&doc_id) else {
            return;
        };
        for session in doc.sessions.values_mut() {
            session.in_sync = false;
        }
        let mut batch = WriteBatch::new();
        let mut new_conflicts = Vec::new();
        let flagged = model::conflicts_from_patches(&doc.doc, &patches);
        // The open conflicts are re-counted (a scan of the document) only where there
        // are or may be some: a change that flags one, or a document that had some.
        let had_open = self.catalog.get(&doc_id).is_none_or(|m| {
            m.open_conflicts
                .as_ref()
                .map_or(m.conflicts_logged > 0, |open| open.count > 0)
        });
        let open = (!flagged.is_empty() || had_open).then(|| {
            let all = model::conflicts(&doc.doc);
            OpenConflicts {
                count: all.len() as u64,
                paths: all
                    .into_iter()
                    .take(MAX_OPEN_CONFLICT_PATHS)
                    .map(|c| c.path)
                    .collect(),
            }
        });
        for conflict in flagged {
            let record = ConflictRecord {
                seq: doc.next_conflict_seq(),
                path: conflict.path,
                detected_ms: now,
                values: conflict
                    .values
                    .into_iter()
                    .map(|v| ConflictRecordValue {
                        value: v.value,
                        actor: v.actor,
                        change: v.change.map(|c| c.to_string()),
                        time: v.time,
                        winner: v.winner,
                    })
                    .collect(),
            };
            if doc.conflict_ids.insert(record.identity()) {
                batch.put(persist::conflict_key(&doc_id, record.seq), record.encode());
                doc.conflict_log.push(record.clone());
                new_conflicts.push(record);
            }
        }
        let heads = doc.doc.get_heads();
        let adopted = !self.catalog.contains_key(&doc_id);
        let mut replies = replies;
        if adopted {
            replies.extend(self.found(doc_id));
            // A pulled document keeps the priority its holders gave it.
            if let Some(priority) = self.pulled_priority(&doc_id).filter(|p| *p != 0) {
                self.catalog
                    .entry(doc_id)
                    .or_insert_with(|| DocumentMeta::new(now, priority));
            }
        }
        if !new_conflicts.is_empty() || open.is_some() {
            let meta = self
                .catalog
                .entry(doc_id)
                .or_insert_with(|| DocumentMeta::new(now, 0));
            meta.conflicts_logged += new_conflicts.len() as u64;
            if let Some(open) = open {
                meta.open_conflicts = Some(open);
            }
        }
        self.persist_sessions(&doc_id, &mut batch);
        self.save_document(doc_id, batch, replies);
        // Plain peers told it was unavailable get it now (created here or arrived).
        self.deliver_wanted(doc_id);
        if adopted {
            self.event(Event::DocumentCreated {
                doc: doc_id,
                origin,
            });
        }
        self.event(Event::DocumentChanged {
            doc: doc_id,
            heads,
            patches,
            origin,
        });
        for record in new_conflicts {
            tracing::info!(doc = %doc_id, path = %record.path, "conflict detected");
            self.event(Event::ConflictDetected {
                doc: doc_id,
                record,
            });
        }
        self.push_to_peers(doc_id);
    }

    /// Writes what changed since the last save (compacting when due) plus metadata,
    /// together with `batch`, atomically.
    ///
    /// One save of a document at a time: while one is in flight, `batch` and `replies`
    /// wait for it (`LoadedDoc::save_waiting`) and go out with the next save when it
    /// completes (`save_waiting`). A save holds only the changes since the previous
    /// save's heads, so one written while an earlier one was in flight landed, when that
    /// one failed, as chunks that cannot load beside a record naming their heads: after
    /// a crash the catalog named changes the store lacked (simulation seed 113).
    pub(super) fn save_document(
        &mut self,
        doc_id: DocumentId,
        mut batch: WriteBatch,
        replies: Vec<(CommandId, Reply)>,
    ) {
        let now = self.now_ms;
        let threshold = self.config.compaction_threshold;
        let Some(doc) = self.docs.get_mut(&doc_id) else {
            return;
        };
        let heads = doc.doc.get_heads();
        if doc.saving {
            let (waiting, waiting_replies) = doc
                .save_waiting
                .get_or_insert_with(|| (WriteBatch::new(), Vec::new()));
            waiting.extend(batch);
            waiting_replies.extend(replies);
            // The catalog (and the digest peers reconcile against) names the newest
            // heads at once, as when the save goes out: a record written on its own
            // waits for the save in flight, and a failure puts the durable heads back.
            if let Some(meta) = self.catalog.get_mut(&doc_id) {
                meta.set_heads(&heads);
                let digest = meta.digest();
                self.items.insert(doc_id, digest);
            }
            return;
        }
        // The first save of a document, and every `threshold`-th, is a compact snapshot.
        let mut replaced = Vec::new();
        if doc.chunk_keys.is_empty() || doc.incremental_chunks + 1 >= threshold {
            replaced = doc.chunk_keys.clone();
            doc.replacing = replaced.clone();
            let (compaction, key, size) = persist::compact(&doc_id, &doc.doc, &doc.chunk_keys);
            batch.extend(compaction);
            doc.chunk_keys = vec![key];
            doc.incremental_chunks = 0;
            doc.chunk_bytes = size;
        } else if let Some((key, chunk)) =
            persist::save_incremental(&doc_id, &doc.doc, &doc.saved_heads)
        {
            doc.chunk_bytes += chunk.len() as u64;
            doc.incremental_chunks += 1;
            doc.chunk_keys.push(key.clone());
            batch.put(key, chunk);
        }
        doc.saved_heads = heads.clone();
        let stored = doc.chunk_bytes;
        // Who changed it last: the newest of the heads' changes (by their stated time).
        let last_actor = heads
            .iter()
            .filter_map(|h| doc.doc.get_change_by_hash(h))
            .max_by_key(|c| c.timestamp())
            .map(|c| c.actor_id().to_hex_string());
        let meta = self
            .catalog
            .entry(doc_id)
            .or_insert_with(|| DocumentMeta::new(now, 0));
        meta.set_heads(&heads);
        meta.updated_ms = now;
        meta.stored_bytes = stored;
        if last_actor.is_some() {
            meta.last_actor = last_actor;
        }
        batch.put(persist::meta_key(&doc_id), meta.encode());
        let digest = meta.digest();
        self.items.insert(doc_id, digest);
        self.write_replacing(Some(doc_id), Some(heads), replies, batch, replaced);
    }

    /// Issues the save that waited for the one in flight, if that one completed.
    pub(super) fn save_waiting(&mut self, doc_id: DocumentId) {
        let Some(doc) = self.docs.get_mut(&doc_id).filter(|d| !d.saving) else {
            return;
        };
        if let Some((batch, replies)) = doc.save_waiting.take() {
            self.save_document(doc_id, batch, replies);
        }
    }

    /// Writes `doc`'s catalog record on its own (new metadata, a receipt), answering
    /// `replies` once it is durable.
    ///
    /// The record names the catalog's heads, which while a save is in flight are that
    /// save's. Storage runs writes in order, so the record would land after the save:
    /// if the save failed, the record would name changes the store lacks, and a crash
    /// before the retry would leave catalog and store disagreeing until the document is
    /// next loaded (simulation seeds 282, 336, 389). So the record waits for the save in
    /// flight (and for a new document's first save to complete) and is written when it
    /// completes (`record_after_save`), with the durable heads if it failed.
    pub(super) fn write_record(&mut self, doc_id: DocumentId, replies: Vec<(CommandId, Reply)>) {
        if let Some(doc) = self.docs.get_mut(&doc_id)
            && doc.record_must_wait()
        {
            doc.record_owed.get_or_insert_with(Vec::new).extend(replies);
            return;
        }
        let Some(meta) = self.catalog.get(&doc_id) else {
            for (id, _) in replies {
                self.reply(id, Err(RepoError::DocumentNotFound(doc_id)));
            }
            return;
        };
        let mut batch = WriteBatch::new();
        batch.put(persist::meta_key(&doc_id), meta.encode());
        // Not counted against the document: a record (a receipt) must not keep it in
        // memory.
        self.write(None, None, replies, batch);
    }

    /// A write of `doc_id` completed: writes the record it owes once no save is in
    /// flight.
    pub(super) fn record_after_save(&mut self, doc_id: DocumentId) {
        let Some(doc) = self.docs.get_mut(&doc_id) else {
            return;
        };
        if doc.record_must_wait() {
            return;
        }
        if let Some(replies) = doc.record_owed.take() {
            self.write_record(doc_id, replies);
        }
    }

    /// Deletes a document for good: its data goes, a tombstone stays and spreads.
    /// The document must be loaded (or unknown), so every key to delete is known.
    pub(super) fn apply_tombstone(
        &mut self,
        doc_id: DocumentId,
        origin: ChangeOrigin,
        reply: Option<CommandId>,
    ) {
        if self.protected.contains(&doc_id) {
            tracing::info!(doc = %doc_id, ?origin, "a protected document is not deleted");
            if let Some(id) = reply {
                let error =
                    RepoError::InvalidChange(format!("document {doc_id} cannot be deleted"));
                self.reply(id, Err(error));
            }
            return;
        }
        let now = self.now_ms;
        let mut batch = WriteBatch::new();
        if let Some(doc) = self.docs.remove(&doc_id) {
            // What waited for a save is moot: the tombstone replaces it.
            let waiting = doc
                .save_waiting
                .into_iter()
                .flat_map(|(_, replies)| replies);
            for (id, _) in waiting.chain(doc.record_owed.into_iter().flatten()) {
                self.reply(id, Err(RepoError::DocumentDeleted(doc_id)));
            }
            // A compaction in flight may fail: what it meant to delete goes too.
            for key in doc.chunk_keys.into_iter().chain(doc.replacing) {
                batch.delete(key);
            }
            let mut storages: Vec<_> = doc.stored_sync.into_keys().collect();
            storages.extend(
                doc.sessions
                    .keys()
                    .filter_map(|c| self.conns.get(c))
                    .filter_map(|c| c.persistent_storage_id()),
            );
            for storage in storages {
                batch.delete(persist::sync_state_key(&doc_id, &storage));
            }
            for record in doc.conflict_log {
                batch.delete(persist::conflict_key(&doc_id, record.seq));
            }
        }
        self.parked.retain(|(d, _), _| *d != doc_id);
        let meta = self
            .catalog
            .entry(doc_id)
            .or_insert_with(|| DocumentMeta::new(now, 0));
        meta.deleted = true;
        meta.heads.clear();
        meta.updated_ms = now;
        meta.stored_bytes = 0;
        batch.put(persist::meta_key(&doc_id), meta.encode());
        self.items.insert(doc_id, HeadsDigest::TOMBSTONE);
        let replies = reply.map(|id| vec![(id, Reply::Done)]).unwrap_or_default();
        self.write(None, None, replies, batch);
        self.sweeps.insert(doc_id);
        self.give_up(doc_id, super::RepoError::DocumentDeleted(doc_id));
        self.forget_wanted_doc(doc_id);
        self.event(Event::DocumentDeleted {
            doc: doc_id,
            origin,
        });
        let except = match origin {
            ChangeOrigin::Remote(conn) => Some(conn),
            ChangeOrigin::Local | ChangeOrigin::Storage => None,
        };
        self.broadcast_tombstone(doc_id, except);
        let conns: Vec<_> = self.conns.keys().copied().collect();
        for conn in conns {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.queue.remove(&doc_id);
                if c.active.remove(&doc_id) {
                    self.pump_queue(conn);
                }
            }
        }
    }
}
