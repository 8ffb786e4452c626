//! Cloud receipts: per document, the heads the team's cloud confirmed holding.
//!
//! A receipt is recorded when a sync session with a cloud settles, that is when the
//! cloud's latest sync message reports exactly our heads. A peerdoc cloud reveals only
//! heads it has stored durably (`send_sync` holds messages back until then), so
//! its receipts are proof; a stock automerge-repo sync server's are only its word, and
//! are kept apart. Receipts live in the document's metadata, which the catalog holds in
//! memory, so a device answers "is it safe to wipe?" offline without loading anything.

use std::cmp::Reverse;

use automerge::ChangeHash;

use crate::WriteBatch;
use crate::ids::{ConnectionId, DocumentId};
use crate::persist::{self, CloudReceipt};

use super::Repo;
use super::connection::Connection;

impl Repo {
    /// The driver dialled `conn` as a cloud endpoint.
    pub(super) fn cloud_endpoint(&mut self, conn: ConnectionId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.cloud_endpoint = true;
        if c.is_ready() {
            self.queue_unconfirmed(conn);
        }
    }

    /// Queues for sync with the cloud on `conn` every live document it has not
    /// confirmed at our current heads. Reconciliation skips documents that are equal
    /// on both sides, and those may still lack a receipt (they reached the cloud
    /// through another device); one round trip each gets it.
    pub(super) fn queue_unconfirmed(&mut self, conn: ConnectionId) {
        let Some(storage) = self
            .conns
            .get(&conn)
            .and_then(Connection::receipt_storage_id)
        else {
            return;
        };
        let wanted: Vec<(i32, DocumentId)> = self
            .catalog
            .iter()
            .filter(|(_, meta)| {
                !meta.deleted
                    && meta.receipts.get(storage.as_str()).is_none_or(|r| {
                        let mut ours = meta.heads.clone();
                        ours.sort();
                        r.heads != ours
                    })
            })
            .map(|(id, meta)| (meta.priority, *id))
            .collect();
        if wanted.is_empty() {
            return;
        }
        tracing::debug!(%conn, documents = wanted.len(), "syncing documents the cloud has not confirmed");
        if let Some(c) = self.conns.get_mut(&conn) {
            for (priority, doc) in wanted {
                c.queue.insert((Reverse(priority), doc));
            }
        }
        self.pump_queue(conn);
    }

    /// The peer on `conn` reported holding `doc` at `heads` (sorted), which are ours:
    /// if it is a cloud, that is a receipt.
    pub(super) fn record_receipt(
        &mut self,
        doc: DocumentId,
        conn: ConnectionId,
        heads: &[ChangeHash],
    ) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let Some(storage) = c.receipt_storage_id() else {
            return;
        };
        let receipt = CloudReceipt {
            heads: heads.iter().map(ToString::to_string).collect(),
            at_ms: self.now_ms,
            durable: c.is_peerdoc(),
        };
        let Some(meta) = self.catalog.get_mut(&doc).filter(|m| !m.deleted) else {
            return;
        };
        if meta
            .receipts
            .get(storage.as_str())
            .is_some_and(|r| r.heads == receipt.heads && r.durable == receipt.durable)
        {
            return;
        }
        meta.receipts.insert(storage.to_string(), receipt);
        let mut batch = WriteBatch::new();
        batch.put(persist::meta_key(&doc), meta.encode());
        // Not counted against the document: a receipt must not keep it in memory.
        self.write(None, None, Vec::new(), batch);
    }
}
