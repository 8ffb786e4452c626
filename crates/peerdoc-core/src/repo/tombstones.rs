//! Tombstones between peerdoc peers: telling peers a document is deleted, and applying
//! a peer's word that it is.

use crate::ids::{ConnectionId, DocumentId};
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
}
