//! What a connection may do to our documents: read-only and protected-only connections
//! (`Input::ConnectionAccess`) and protected documents (`Input::ProtectDocument`). The
//! checks themselves sit where messages are handled (`peers.rs`); this file changes the
//! state they read.

use crate::ids::{ConnectionId, DocumentId};

use super::{PeerAccess, Repo};

impl Repo {
    /// Applies `access` to `conn` and to every sync session it has, loaded or parked.
    pub(super) fn connection_access(&mut self, conn: ConnectionId, access: PeerAccess) {
        let read_only = access != PeerAccess::ReadWrite;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.protected_only = access == PeerAccess::ProtectedOnly;
        if c.read_only == read_only {
            return;
        }
        c.read_only = read_only;
        tracing::info!(%conn, ?access, "peer access changed");
        for (doc_id, doc) in self.docs.iter_mut() {
            if self.protected.contains(doc_id) {
                continue;
            }
            if let Some(session) = doc.sessions.get_mut(&conn) {
                // Leaving read-only asks the peer (SYNC_RESET) to resend what we ignored.
                session.state.set_read_only(read_only);
                session.dirty = true;
            }
        }
        for ((parked_doc, parked_conn), session) in self.parked.iter_mut() {
            if *parked_conn == conn && !self.protected.contains(parked_doc) {
                session.state.set_read_only(read_only);
            }
        }
        if read_only {
            self.source_read_only(conn);
        } else {
            // What the peer offered while read-only was ignored: sync again.
            let docs: Vec<DocumentId> = self
                .docs
                .iter()
                .filter(|(_, d)| d.sessions.contains_key(&conn))
                .map(|(id, _)| *id)
                .collect();
            for doc in docs {
                self.send_sync(doc, conn);
            }
        }
    }

    /// See [`Input::ProtectDocument`](super::Input::ProtectDocument).
    pub(super) fn protect(&mut self, doc_id: DocumentId) {
        if !self.protected.insert(doc_id) {
            return;
        }
        let Some(doc) = self.docs.get_mut(&doc_id) else {
            return;
        };
        let mut resync = Vec::new();
        for (conn, session) in doc.sessions.iter_mut() {
            if session.state.read_only {
                session.state.set_read_only(false);
                session.dirty = true;
                resync.push(*conn);
            }
        }
        for ((parked_doc, _), session) in self.parked.iter_mut() {
            if *parked_doc == doc_id {
                session.state.set_read_only(false);
            }
        }
        for conn in resync {
            self.send_sync(doc_id, conn);
        }
    }
}
