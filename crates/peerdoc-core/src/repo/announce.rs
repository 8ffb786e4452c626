//! Gossip announcements: a peer says "document D is at heads H". If we lack any of H we
//! sync D at once, instead of waiting for a push that gossip may have overtaken or that
//! was lost. Announcements only ever trigger a sync; the changes themselves still travel
//! on the ordered per-peer stream, so a forged or stale announcement costs one sync
//! round and nothing else.

use automerge::{ChangeHash, ReadDoc as _};

use crate::ids::{ConnectionId, DocumentId};

use super::Repo;
use super::connection::Connection;

impl Repo {
    /// Handles [`super::Input::HeadsAnnounced`].
    pub(super) fn heads_announced(
        &mut self,
        doc: DocumentId,
        heads: &[ChangeHash],
        from: Option<ConnectionId>,
    ) {
        match self.catalog.get(&doc) {
            // An unknown document reaches us through the announcer's own push and
            // reconciliation; a deleted one never comes back.
            None => {
                tracing::trace!(doc = %doc, "announcement for an unknown document ignored");
                return;
            }
            Some(meta) if meta.deleted => return,
            Some(_) => {}
        }
        if !self.lacks_any(&doc, heads) {
            return;
        }
        let targets: Vec<ConnectionId> = match from {
            Some(conn) if self.conns.get(&conn).is_some_and(Connection::is_ready) => vec![conn],
            // Relayed from a peer we have no stream with: whoever we are connected to may
            // already have the change (or will push it to us when it arrives).
            _ => self
                .conns
                .iter()
                .filter(|(_, c)| c.is_ready() && c.is_peerdoc())
                .map(|(id, _)| *id)
                .collect(),
        };
        tracing::debug!(doc = %doc, peers = targets.len(), "announced heads missing; syncing now");
        for conn in targets {
            self.sync_now(doc, conn);
        }
    }

    /// Whether `doc` lacks any of `heads`. No heads means "changed, heads not given".
    fn lacks_any(&self, doc: &DocumentId, heads: &[ChangeHash]) -> bool {
        if heads.is_empty() {
            return true;
        }
        if let Some(loaded) = self.docs.get(doc) {
            return heads
                .iter()
                .any(|h| loaded.doc.get_change_by_hash(h).is_none());
        }
        // Not in memory: the catalog's heads answer the common case (the announcement
        // names what we already have) without loading; anything else is worth a load.
        self.catalog.get(doc).is_none_or(|meta| {
            heads
                .iter()
                .any(|h| !meta.heads.iter().any(|ours| *ours == h.to_string()))
        })
    }

    /// Sends `conn` a sync message about `doc` even if our session believes it has
    /// nothing new to say: the announcement proved its view of the peer stale.
    fn sync_now(&mut self, doc: DocumentId, conn: ConnectionId) {
        if self.docs.contains_key(&doc) {
            self.touch(&doc);
            if let Some((_, session)) = self.doc_and_session(doc, conn) {
                session.state.have_responded = false;
                session.state.in_flight = false;
                session.in_sync = false;
            }
            self.send_sync(doc, conn);
        } else {
            let priority = self.catalog.get(&doc).map_or(0, |m| m.priority);
            if let Some(c) = self.conns.get_mut(&conn) {
                c.queue.push(priority, doc);
            }
            self.pump_queue(conn);
        }
    }
}
