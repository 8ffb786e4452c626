//! Late delivery: plain automerge-repo peers that asked for a document we did not have.
//!
//! A stock automerge-repo client asks (`request`) once. When the daemon answers
//! `doc-unavailable` the client's handle becomes "unavailable" and automerge-repo 2.x
//! never asks again: it waits for a peer to *offer* the document. The stock sync server
//! offers it to every peer that had asked as soon as the document reaches it (its
//! doc-synchronizer keeps the asker among the document's peers and syncs with all of
//! them on change). This module does the same: the engine remembers who was told
//! "unavailable", and when the document enters the catalog (created here, synced from
//! a peer, fetched from the cloud) it opens a sync session with each of them and sends
//! the first sync message. From then on the session carries every later change, like
//! any other.
//!
//! Bounded: at most [`MAX_WANTED_PER_CONNECTION`] documents per connection; asking for
//! more forgets the oldest request. Everything a connection asked for is forgotten when
//! it closes, and a document is forgotten when it is delivered or deleted. Peerdoc peers
//! are not remembered: reconciliation and pushes already bring them every document.
//! Access is checked when delivering, not only when asking: a connection that may only
//! see protected documents never receives another one (`send_sync` refuses it).

use automerge::sync::{self, SyncDoc as _};

use crate::ids::{ConnectionId, DocumentId};
use crate::wire::decode_sync_data;

use super::Repo;

/// Documents one connection may be waiting for. A client that loads a whole season
/// (thousands of documents) before any has reached this device must still get all of
/// them; beyond this the oldest request is forgotten (that client sees "unavailable"
/// for it, as it would without late delivery).
pub const MAX_WANTED_PER_CONNECTION: usize = 16_384;

/// Largest `request` sync message kept for the delivery's first message (an empty
/// document's is a few bytes); a bigger one is not kept, and the delivery takes one
/// more round trip.
pub const MAX_KEPT_REQUEST_BYTES: usize = 1024;

impl Repo {
    /// `conn` was told `doc` is unavailable: remember it, to deliver `doc` if it arrives.
    pub(super) fn remember_wanted(&mut self, conn: ConnectionId, doc: DocumentId, request: &[u8]) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.is_peerdoc() || c.wanted.contains_key(&doc) {
            return;
        }
        if request.len() <= MAX_KEPT_REQUEST_BYTES {
            c.wanted_requests.insert(doc, request.to_vec());
        }
        self.wanted_seq += 1;
        c.wanted.insert(doc, self.wanted_seq);
        c.wanted_by_age.insert(self.wanted_seq, doc);
        let mut forgotten = Vec::new();
        while c.wanted.len() > MAX_WANTED_PER_CONNECTION {
            let Some((_, oldest)) = c.wanted_by_age.pop_first() else {
                break;
            };
            c.wanted.remove(&oldest);
            c.wanted_requests.remove(&oldest);
            forgotten.push(oldest);
        }
        self.wanted.entry(doc).or_default().insert(conn);
        for old in forgotten {
            tracing::debug!(%conn, doc = %old, "too many wanted documents; oldest request forgotten");
            self.unwant(old, conn);
        }
    }

    /// Removes `conn` from the index of who wants `doc`.
    fn unwant(&mut self, doc: DocumentId, conn: ConnectionId) {
        if let Some(conns) = self.wanted.get_mut(&doc) {
            conns.remove(&conn);
            if conns.is_empty() {
                self.wanted.remove(&doc);
            }
        }
    }

    /// `doc` just entered the catalog: offer it to every connection that asked for it.
    pub(super) fn deliver_wanted(&mut self, doc: DocumentId) {
        let Some(conns) = self.wanted.remove(&doc) else {
            return;
        };
        let protected = self.protected.contains(&doc);
        for conn in conns {
            let Some(c) = self.conns.get_mut(&conn) else {
                continue;
            };
            if let Some(seq) = c.wanted.remove(&doc) {
                c.wanted_by_age.remove(&seq);
            }
            let request = c.wanted_requests.remove(&doc);
            if c.protected_only && !protected {
                continue;
            }
            tracing::debug!(%conn, %doc, "delivering a document the peer asked for before it arrived");
            // The session makes every later change reach the peer too (`push_to_peers`).
            let Some((automerge, session)) = self.doc_and_session(doc, conn) else {
                continue;
            };
            // What the peer said it has (nothing, usually): the first message can then
            // carry the changes instead of asking what it lacks.
            if let Some(message) = request.and_then(|r| decode_sync_data(&r).ok())
                && message.changes.is_empty()
                && automerge
                    .receive_sync_message(&mut session.state, message)
                    .is_err()
            {
                session.state = sync::State::new();
            }
            self.send_sync(doc, conn);
        }
    }

    /// `doc` was deleted: nobody will get it.
    pub(super) fn forget_wanted_doc(&mut self, doc: DocumentId) {
        let Some(conns) = self.wanted.remove(&doc) else {
            return;
        };
        for conn in conns {
            if let Some(c) = self.conns.get_mut(&conn)
                && let Some(seq) = c.wanted.remove(&doc)
            {
                c.wanted_by_age.remove(&seq);
                c.wanted_requests.remove(&doc);
            }
        }
    }

    /// A closed connection's requests go with it.
    pub(super) fn forget_wanted_of(
        &mut self,
        conn: ConnectionId,
        docs: impl Iterator<Item = DocumentId>,
    ) {
        for doc in docs {
            self.unwant(doc, conn);
        }
    }

    /// How many (document, connection) requests wait for late delivery (for tests and
    /// status pages).
    pub fn wanted_documents(&self) -> usize {
        self.wanted.values().map(|conns| conns.len()).sum()
    }
}
