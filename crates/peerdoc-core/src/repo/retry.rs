//! Writes that failed, written again.
//!
//! A document's save is re-derived from its heads at the next tick (`tick` in
//! `repo.rs`). Every other write (metadata, tombstones, sync states) keeps a copy of its
//! batch; when it fails the copy waits here and goes out again at the next tick, the
//! metadata records rebuilt from the catalog as it is then, so a stale copy never lands
//! over a newer record. Found by the simulator's storage faults (`docs/simulation.md`).

use std::collections::BTreeSet;

use crate::ids::DocumentId;
use crate::persist;
use crate::storage::{StorageKey, WriteBatch, WriteOp};

use super::Repo;

impl Repo {
    /// Writes again, as one batch, what failed since the last tick and is not re-derived
    /// from a document's heads: each metadata record as the catalog has it now (never a
    /// stale copy over a newer one; dropped for a document no longer known), everything
    /// else (tombstones' deletions, sync states, the storage id) as it was.
    pub(super) fn retry_failed_writes(&mut self) {
        if self.failed_writes.is_empty() {
            return;
        }
        let mut batch = WriteBatch::new();
        let mut metas = BTreeSet::new();
        for failed in std::mem::take(&mut self.failed_writes) {
            for op in failed.into_ops() {
                let key = match &op {
                    WriteOp::Put { key, .. } | WriteOp::Delete { key } => key,
                };
                let meta_of = (key.components().len() == 3
                    && key.starts_with(&persist::meta_prefix()))
                .then(|| key.components()[2].parse::<DocumentId>().ok())
                .flatten();
                match meta_of {
                    Some(doc) => {
                        metas.insert(doc);
                    }
                    None => match op {
                        // A sync state or conflict record of a document deleted since
                        // would bring data back under its tombstone (seed 292).
                        WriteOp::Put { key, .. } if self.written_for_deleted(&key) => {}
                        WriteOp::Put { key, value } => {
                            batch.put(key, value);
                        }
                        WriteOp::Delete { key } => {
                            batch.delete(key);
                        }
                    },
                }
            }
        }
        // A record is written as the catalog has it, like every write of a record alone
        // (`write_record`): its heads are the durable ones (after a failed save, until
        // the retry: see the failure branch of `storage_completed`), or, while a save is
        // in flight, that save's, and then the record waits until the save completes, so
        // that it never names changes the store lacks. Never older heads: a record whose
        // heads went back makes receipts for the newer ones look unconfirmed after a
        // restart.
        for doc in metas {
            // A record waits for a save in flight, as every record written alone does
            // (`write_record`).
            if let Some(loaded) = self.docs.get_mut(&doc).filter(|d| d.record_must_wait()) {
                loaded.record_owed.get_or_insert_with(Vec::new);
            } else if let Some(meta) = self.catalog.get(&doc) {
                batch.put(persist::meta_key(&doc), meta.encode());
            }
        }
        if batch.is_empty() {
            return;
        }
        tracing::info!(
            ops = batch.ops().len(),
            "writing again what storage failed to write"
        );
        self.write(None, None, Vec::new(), batch);
    }

    /// Whether `key` holds a document's data (its chunks, sync states or conflict log)
    /// and that document has been deleted.
    fn written_for_deleted(&self, key: &StorageKey) -> bool {
        let parts = key.components();
        let doc = match parts {
            [first, kind, doc, ..] if first == persist::PEERDOC && kind == "conflicts" => doc,
            [first, ..] if first == persist::PEERDOC => return false,
            [doc, _, ..] => doc,
            _ => return false,
        };
        doc.parse::<DocumentId>()
            .ok()
            .and_then(|doc| self.catalog.get(&doc))
            .is_some_and(|meta| meta.deleted)
    }
}
