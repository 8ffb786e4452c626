//! Tombstones between peerdoc peers: telling peers a document is deleted, and applying
//! a peer's word that it is.

use crate::ids::{ConnectionId, DocumentId};
use crate::persist;
use crate::wire::Message;

use super::{ChangeOrigin, Repo, Waiter};

impl Repo {
    /// Tells a peerdoc peer that `doc` is deleted.
    pub(super) fn send_tombstone(&mut self, conn: ConnectionId, doc: DocumentId) {
        let Some(target) = self.peer_of(conn) else {
            return;
        };
        let message = Message::Deleted {
            sender_id: self.me(),
            target_id: target,
            document_id: doc,
        };
        self.send(conn, message);
    }

    /// Tells every peerdoc peer (but `except`) that `doc` is deleted.
    pub(super) fn broadcast_tombstone(&mut self, doc: DocumentId, except: Option<ConnectionId>) {
        let targets: Vec<ConnectionId> = self
            .conns
            .iter()
            .filter(|(id, c)| c.is_peerdoc() && Some(**id) != except)
            .map(|(id, _)| *id)
            .collect();
        for conn in targets {
            self.send_tombstone(conn, doc);
        }
    }

    /// A peer says `doc` is deleted: apply the tombstone (loading the document first
    /// when it is stored but not in memory, so every key to delete is known).
    pub(super) fn peer_deleted(&mut self, conn: ConnectionId, doc: DocumentId) {
        match self.catalog.get(&doc) {
            Some(meta) if meta.deleted => {}
            None => self.apply_tombstone(doc, ChangeOrigin::Remote(conn), None),
            Some(_) if self.docs.contains_key(&doc) => {
                self.apply_tombstone(doc, ChangeOrigin::Remote(conn), None)
            }
            Some(_) => {
                if self.admit_inbound(conn) {
                    self.start_load(doc, Waiter::PeerDeleted(conn));
                }
            }
        }
    }

    /// Looks under each newly deleted document's prefix for data the tombstone's batch
    /// did not delete, after it (storage runs in order). The batch deletes the keys the
    /// loaded document knows, and a key can be on disk that it does not know (written
    /// by a save that failed after a compaction that did not, in the days when saves of
    /// one document were pipelined), or the batch itself can fail and be lost with a
    /// crash (seed 292 of the storage-fault simulation).
    pub(super) fn sweep_deleted(&mut self) {
        for doc in std::mem::take(&mut self.sweeps) {
            self.storage(
                super::Purpose::SweepDeleted(doc),
                super::StorageOp::LoadRange {
                    prefix: persist::document_prefix(&doc),
                },
            );
        }
    }

    /// Deletes whatever the sweep of `doc` found, if it is still deleted; a failed read
    /// is tried again at the next tick.
    ///
    /// The deletion goes in one batch with the tombstone record. The sweep finds data
    /// mostly because the tombstone's own batch failed, and then the record on disk still
    /// names the document's heads: deleting the chunks alone, a crash before the record's
    /// retry left a record naming changes the store no longer held (storage-fault seeds
    /// 18192, 22442, 22532, 23713, 27401).
    pub(super) fn sweep_completed(
        &mut self,
        doc: DocumentId,
        result: Result<super::StorageResult, crate::storage::StorageError>,
    ) {
        let Some(record) = self
            .catalog
            .get(&doc)
            .filter(|m| m.deleted)
            .map(|m| m.encode())
        else {
            return;
        };
        let entries = match result {
            Ok(super::StorageResult::Range(entries)) => entries,
            Ok(_) => return,
            Err(error) => {
                tracing::debug!(doc = %doc, %error, "sweeping a deleted document failed; again at the next tick");
                self.sweeps.insert(doc);
                return;
            }
        };
        if entries.is_empty() {
            return;
        }
        tracing::info!(doc = %doc, keys = entries.len(), "deleting what a deleted document left in storage");
        let mut batch = crate::storage::WriteBatch::new();
        for (key, _) in entries {
            batch.delete(key);
        }
        batch.put(persist::meta_key(&doc), record);
        self.write(None, None, Vec::new(), batch);
    }
}
