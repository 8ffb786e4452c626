//! Fetch each document once.
//!
//! A newcomer lacks every document, and every peer it meets holds them all. Each of
//! those peers opens a sync session about each document, and automerge answers an empty
//! document's peer with "send me everything": with four peers, four copies of the whole
//! set arrive, which on a phone hotspot is four times the wait.
//!
//! So while a document is empty here, only one peer is answered about it: the first
//! that we answered (the *source*). The others' sessions wait, their messages received
//! but unanswered, until the source's changes arrive; our answer then carries our new
//! heads and their Bloom filter, and a peer that holds nothing more finds itself in sync
//! without sending the document again. Peers start on different documents (the sync
//! queue's order is each device's own, `connection::SyncQueue`), so the work spreads
//! over every peer.
//!
//! The source loses its role when it disconnects or becomes read-only (its changes are
//! not applied), when it has sent nothing at all for
//! [`FETCH_PATIENCE_MS`] (checked each tick), or when its session settles with the
//! document still empty; a waiting peer is then answered and becomes the source.
//! Only empty documents are fetched this way: a device that is merely behind
//! exchanges changes with every peer as before, because each may hold different ones.

use std::collections::BTreeSet;

use crate::ids::{ConnectionId, DocumentId};

use super::Repo;

/// How long a fetch waits on a source that sends nothing at all before another peer is
/// answered. A slow source that keeps sending keeps the role: on a saturated link every
/// peer is slow, and a second copy would only make it slower.
pub const FETCH_PATIENCE_MS: u64 = 10_000;

/// A document we lack, being sent by one peer.
#[derive(Debug)]
pub(super) struct Fetch {
    source: ConnectionId,
    /// Peers whose messages about the document are unanswered until the source's
    /// changes arrive.
    waiting: BTreeSet<ConnectionId>,
}

impl Repo {
    /// Whether `doc` is loaded and empty: a document we are waiting to receive.
    pub(super) fn lacks(&self, doc: &DocumentId) -> bool {
        self.docs
            .get(doc)
            .is_some_and(|d| d.doc.get_heads().is_empty())
    }

    /// Whether `conn` can send us `doc`: it is connected and its changes are applied (a
    /// read-only peer's are not, see `PeerAccess`).
    fn can_source(&self, doc: &DocumentId, conn: ConnectionId) -> bool {
        self.conns
            .get(&conn)
            .is_some_and(|c| !c.read_only || self.protected.contains(doc))
    }

    /// Whether our sync message about `doc` to `conn` must wait because another peer
    /// is sending us the document; makes `conn` the source when nobody is.
    pub(super) fn wait_for_fetch(&mut self, doc: DocumentId, conn: ConnectionId) -> bool {
        if !self.lacks(&doc) {
            self.fetching.remove(&doc);
            return false;
        }
        if !self.can_source(&doc, conn) {
            return false;
        }
        let source_ok = self
            .fetching
            .get(&doc)
            .is_some_and(|f| self.can_source(&doc, f.source));
        let fetch = self.fetching.entry(doc).or_insert_with(|| Fetch {
            source: conn,
            waiting: BTreeSet::new(),
        });
        if fetch.source == conn {
            return false;
        }
        if !source_ok {
            fetch.source = conn;
            fetch.waiting.remove(&conn);
            return false;
        }
        fetch.waiting.insert(conn);
        true
    }

    /// `doc`'s session with `conn` settled: if `conn` was the source, the fetch is over
    /// (the document arrived, or the source has nothing either) and the peers kept
    /// waiting are answered.
    pub(super) fn fetch_settled(&mut self, doc: DocumentId, conn: ConnectionId) {
        if self.fetching.get(&doc).is_some_and(|f| f.source == conn) {
            self.answer_waiting(doc);
        }
    }

    /// `conn` closed: the fetches it was the source of go to a waiting peer.
    pub(super) fn fetches_closed(&mut self, conn: ConnectionId) {
        let orphaned: Vec<DocumentId> = self
            .fetching
            .iter_mut()
            .filter_map(|(doc, f)| {
                f.waiting.remove(&conn);
                (f.source == conn).then_some(*doc)
            })
            .collect();
        for doc in orphaned {
            self.answer_waiting(doc);
        }
    }

    /// `conn` became read-only: what it was sending, another peer sends.
    pub(super) fn source_read_only(&mut self, conn: ConnectionId) {
        let orphaned: Vec<DocumentId> = self
            .fetching
            .iter()
            .filter(|(doc, f)| f.source == conn && !self.protected.contains(*doc))
            .map(|(doc, _)| *doc)
            .collect();
        for doc in orphaned {
            self.answer_waiting(doc);
        }
    }

    /// Each tick: fetches whose document arrived or was evicted are forgotten; a source
    /// that has sent nothing for [`FETCH_PATIENCE_MS`] is replaced.
    pub(super) fn expire_fetches(&mut self) {
        let now = self.now_ms;
        let mut stalled = Vec::new();
        let docs: Vec<DocumentId> = self.fetching.keys().copied().collect();
        for doc in docs {
            if !self.lacks(&doc) {
                self.fetching.remove(&doc);
                continue;
            }
            let Some(fetch) = self.fetching.get(&doc) else {
                continue;
            };
            let quiet = !self.can_source(&doc, fetch.source)
                || self
                    .conns
                    .get(&fetch.source)
                    .is_none_or(|c| now.saturating_sub(c.last_in_ms) >= FETCH_PATIENCE_MS);
            if quiet && !fetch.waiting.is_empty() {
                tracing::debug!(%doc, source = %fetch.source, "fetch source quiet; asking another peer");
                stalled.push(doc);
            }
        }
        for doc in stalled {
            self.answer_waiting(doc);
        }
    }

    /// Ends `doc`'s fetch and answers the peers it kept waiting; if the document is
    /// still empty, the first of them becomes the new source and the rest wait again.
    fn answer_waiting(&mut self, doc: DocumentId) {
        let Some(fetch) = self.fetching.remove(&doc) else {
            return;
        };
        for conn in fetch.waiting {
            if self.conns.contains_key(&conn) {
                self.send_sync(doc, conn);
            }
        }
    }

    /// The documents being fetched now: each with its source and how many other peers
    /// wait for it.
    pub fn fetches(&self) -> Vec<(DocumentId, ConnectionId, usize)> {
        self.fetching
            .iter()
            .map(|(doc, f)| (*doc, f.source, f.waiting.len()))
            .collect()
    }
}
