//! Cloud receipts: per document, the heads the team's cloud confirmed holding.
//!
//! A receipt is recorded when a sync session with a cloud settles, that is when the
//! cloud's latest sync message reports exactly our heads. A peerdoc cloud reveals only
//! heads it has stored durably (`send_sync` holds messages back until then), so
//! its receipts are proof; a stock automerge-repo sync server's are only its word, and
//! are kept apart. Receipts live in the document's metadata, which the catalog holds in
//! memory, so a device answers "is it safe to wipe?" offline without loading anything.
//!
//! Durable receipts travel between peerdoc peers as automerge-repo
//! `remote-heads-changed` messages (the cloud's storage id and the heads it confirmed):
//! a device that never reaches the cloud learns that another device's upload covered
//! its work. Each is relayed once, when it is new to the relaying device, and a peer
//! also hears the receipts of a document when their sync of it settles.

use std::collections::BTreeMap;

use automerge::ChangeHash;

use crate::ids::{ConnectionId, DocumentId, StorageId};
use crate::persist::CloudReceipt;
use crate::wire::{self, Message, RemoteHeads};

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
                    && meta
                        .receipts
                        .get(storage.as_str())
                        .is_none_or(|r| !meta.is_current(r))
            })
            .map(|(id, meta)| (meta.priority, *id))
            .collect();
        if wanted.is_empty() {
            return;
        }
        tracing::debug!(%conn, documents = wanted.len(), "syncing documents the cloud has not confirmed");
        if let Some(c) = self.conns.get_mut(&conn) {
            for (priority, doc) in wanted {
                c.queue.push(priority, doc);
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
            durability: c.cloud_durability(),
        };
        let durable = receipt.durable;
        if self.store_receipt(doc, &storage, receipt, true) && durable {
            self.relay_receipt(doc, &storage, Some(conn));
        }
    }

    /// Keeps `receipt` from the cloud `storage` if it says something new; says whether it
    /// was kept. The same heads confirmed again change nothing (no write, no relay).
    ///
    /// The cloud's own word (`direct`: a session with it just settled at our heads) is
    /// the freshest there is and always replaces. A relayed receipt replaces only one
    /// that ranks below it in a total order (confirmation time, then durability, then
    /// heads), so receipts relayed around a loop of peers settle on one instead of
    /// replacing each other forever (found by the simulator, seed 12).
    fn store_receipt(
        &mut self,
        doc: DocumentId,
        storage: &StorageId,
        receipt: CloudReceipt,
        direct: bool,
    ) -> bool {
        let Some(meta) = self.catalog.get_mut(&doc).filter(|m| !m.deleted) else {
            return false;
        };
        let rank = |r: &CloudReceipt| (r.at_ms, r.durable, r.heads.clone());
        if let Some(kept) = meta.receipts.get(storage.as_str())
            && ((kept.heads == receipt.heads && kept.durable >= receipt.durable)
                || (!direct && rank(kept) >= rank(&receipt)))
        {
            return false;
        }
        if !meta.receipts.contains_key(storage.as_str())
            && meta.receipts.len() >= MAX_RECEIPTS_PER_DOC
            && let Some(oldest) = meta
                .receipts
                .iter()
                .min_by_key(|(_, r)| r.at_ms)
                .map(|(s, _)| s.clone())
        {
            meta.receipts.remove(&oldest);
        }
        let heads: Option<Vec<ChangeHash>> = receipt.heads.iter().map(|h| h.parse().ok()).collect();
        let at_ms = receipt.at_ms;
        meta.receipts.insert(storage.to_string(), receipt);
        self.write_record(doc, Vec::new());
        // Apps subscribed to the cloud's storage id hear what it confirmed.
        if let Some(heads) = heads {
            self.remote_heads_changed(doc, storage, &heads, at_ms);
        }
        true
    }

    /// Tells every ready peerdoc peer (but `except`, and the cloud itself) that the
    /// cloud `storage` confirmed `doc`.
    fn relay_receipt(
        &mut self,
        doc: DocumentId,
        storage: &StorageId,
        except: Option<ConnectionId>,
    ) {
        let targets: Vec<ConnectionId> = self
            .conns
            .iter()
            .filter(|(id, c)| {
                Some(**id) != except
                    && c.is_peerdoc()
                    && c.persistent_storage_id().as_ref() != Some(storage)
            })
            .map(|(id, _)| *id)
            .collect();
        for conn in targets {
            self.send_receipts(doc, conn, Some(storage));
        }
    }

    /// Sends `conn` the durable receipts of `doc` (only `storage`'s, when given).
    fn send_receipts(&mut self, doc: DocumentId, conn: ConnectionId, only: Option<&StorageId>) {
        let Some(target) = self.peer_of(conn) else {
            return;
        };
        let Some(meta) = self.catalog.get(&doc) else {
            return;
        };
        let new_heads: BTreeMap<StorageId, RemoteHeads> = meta
            .receipts
            .iter()
            .filter(|(s, r)| r.durable && only.is_none_or(|o| o.as_str() == s.as_str()))
            .filter_map(|(s, r)| {
                let heads: Option<Vec<ChangeHash>> =
                    r.heads.iter().map(|h| h.parse().ok()).collect();
                Some((
                    StorageId::new(s.clone()),
                    RemoteHeads {
                        heads: wire::encode_heads(&heads?),
                        timestamp: r.at_ms,
                        durability: r.durability,
                    },
                ))
            })
            .collect();
        if new_heads.is_empty() {
            return;
        }
        let message = Message::RemoteHeadsChanged {
            sender_id: self.config.peer_id.clone(),
            target_id: target,
            document_id: doc,
            new_heads,
        };
        self.send(conn, message);
    }

    /// A peerdoc peer's sync of `doc` with us settled: it gets the cloud's word for it
    /// too, if we have it (it may never reach the cloud itself).
    pub(super) fn share_receipts(&mut self, doc: DocumentId, conn: ConnectionId) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        if !c.is_peerdoc() || c.receipt_storage_id().is_some() {
            return;
        }
        let current = self
            .catalog
            .get(&doc)
            .is_some_and(|m| m.current_receipt().is_some_and(|r| r.durable));
        if current {
            self.send_receipts(doc, conn, None);
        }
    }

    /// A peerdoc peer relayed what clouds confirmed of `doc` (peerdoc peers send
    /// `remote-heads-changed` for nothing else). Kept like our own receipts, and passed on.
    pub(super) fn receipts_relayed(
        &mut self,
        conn: ConnectionId,
        doc: DocumentId,
        new_heads: BTreeMap<StorageId, RemoteHeads>,
    ) {
        for (storage, remote) in new_heads {
            let Some(mut heads) = wire::decode_heads(&remote.heads) else {
                tracing::debug!(%conn, doc = %doc, "relayed receipt with undecodable heads ignored");
                continue;
            };
            heads.sort();
            let receipt = CloudReceipt {
                heads: heads.iter().map(ToString::to_string).collect(),
                at_ms: remote.timestamp,
                durable: true,
                durability: remote.durability,
            };
            if self.store_receipt(doc, &storage, receipt, false) {
                self.relay_receipt(doc, &storage, Some(conn));
            }
        }
    }
}

/// Receipts kept per document, one per cloud: what a peer relays cannot grow it further
/// (the oldest goes).
const MAX_RECEIPTS_PER_DOC: usize = 4;
