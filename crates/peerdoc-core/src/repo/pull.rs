//! Each document from one peer: pulls (extension version 2).
//!
//! When reconciliation finds that a peer lacks documents we hold, and the peer speaks
//! version 2, we do not send them. The peer learned from reconciliation which documents
//! it lacks and the digest of our heads for each. Priorities travel in `peerdoc/offer`
//! (id, priority, digest: 36 bytes a document) for the lacked documents of a priority
//! other than the default, sent in each reconciliation round before our reply, so that
//! they arrive before the reply tells the peer which documents it lacks (reconciliation
//! reports a range the peer holds nothing of at once, `reconcile.rs`). The peer collects
//! what all its peers hold and asks for each document from one of them, highest
//! priority first, giving each to the peer with the least work queued. A document still
//! queued at a busy peer moves to a less busy one when that one turns out to hold it
//! too, so a newcomer meeting four peers takes about a quarter of its documents from
//! each.
//!
//! Asking is a sync message from an empty document; the peer answers with all of it.
//! Once it arrives, the other holders whose digest matches our new heads are not told
//! about it (they hold exactly what we hold), nor peers whose reconciliation with us is
//! still running (it compares the document with what we hold by then); one that held
//! other heads syncs as usual, so nothing a second peer holds is lost. A document we hold already when a peer turns
//! out to hold it too (it arrived from elsewhere meanwhile) is synced with that peer
//! as if it had sent it.
//!
//! An ask moves to another holder when its peer disconnects, answers `doc-unavailable`,
//! or sends nothing at all for [`FETCH_PATIENCE_MS`]. Pulls are bounded ([`MAX_PULLS`]
//! documents); past that, documents are ignored (and logged) and arrive at the next
//! reconciliation.

use std::collections::BTreeMap;

use automerge::{Automerge, sync, sync::SyncDoc};

use crate::ids::{ConnectionId, DocumentId, HeadsDigest};
use crate::wire::{Message, Offered};

use super::Repo;
use super::connection::Connection;
use super::fetch::FETCH_PATIENCE_MS;

/// The most documents being pulled at once (about 100 bytes each).
pub const MAX_PULLS: usize = 100_000;

/// The most documents in one `peerdoc/offer` (36 bytes each).
pub const MAX_OFFER_DOCUMENTS: usize = 4096;

/// A document we lack and peers offered.
#[derive(Debug)]
pub(super) struct Pull {
    priority: i32,
    /// The peers that hold it, with the digest of their heads.
    offered: BTreeMap<ConnectionId, HeadsDigest>,
    /// The peer it is queued at or asked from.
    assigned: Option<ConnectionId>,
}

impl Repo {
    /// Offers `conn` the documents it lacks (see the module docs).
    pub(super) fn send_offers(&mut self, conn: ConnectionId, offers: Vec<Offered>) {
        let Some(target) = self.peer_of(conn) else {
            return;
        };
        for chunk in offers.chunks(MAX_OFFER_DOCUMENTS) {
            let message = Message::Offer {
                sender_id: self.me(),
                target_id: target.clone(),
                documents: chunk.to_vec(),
            };
            self.send(conn, message);
        }
    }

    /// The priority `doc`'s holders gave it, while it is being pulled.
    pub(super) fn pulled_priority(&self, doc: &DocumentId) -> Option<i32> {
        self.pulls.get(doc).map(|p| p.priority)
    }

    /// Whether `doc` is being pulled.
    pub(super) fn pulling(&self, doc: &DocumentId) -> bool {
        self.pulls.contains_key(doc)
    }

    /// `conn` holds these documents (it offered them, or reconciliation found them): each
    /// one we lack is queued at the least busy peer that holds it; one we hold is synced
    /// with `conn` as usual.
    pub(super) fn offer_received(&mut self, conn: ConnectionId, documents: Vec<Offered>) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let (read_only, protected_only) = (c.read_only, c.protected_only);
        let mut ignored = 0usize;
        for offered in documents {
            let doc = offered.document_id;
            let protected = self.protected.contains(&doc);
            // What we would not take from this peer, we do not ask it for.
            if (read_only || protected_only) && !protected {
                continue;
            }
            let holds = self.catalog.contains_key(&doc)
                || self.docs.contains_key(&doc) && !self.lacks(&doc);
            if holds {
                // We hold it already (it arrived from elsewhere, or before our
                // catalog listed it): sync with this peer as if it had sent it, unless
                // both sides hold the same heads.
                if self.items.get(&doc) != Some(offered.digest)
                    && let Some(c) = self.conns.get_mut(&conn)
                {
                    c.queue.push(offered.priority, doc);
                }
                continue;
            }
            if !self.pulls.contains_key(&doc) && self.pulls.len() >= MAX_PULLS {
                ignored += 1;
                continue;
            }
            let pull = self.pulls.entry(doc).or_insert_with(|| Pull {
                priority: offered.priority,
                offered: BTreeMap::new(),
                assigned: None,
            });
            pull.priority = pull.priority.max(offered.priority);
            pull.offered.insert(conn, offered.digest);
            self.assign(doc, Some(conn));
        }
        if ignored > 0 {
            tracing::warn!(%conn, ignored, limit = MAX_PULLS, "offers over the bound ignored; they arrive at the next reconciliation");
        }
        self.pump_queue(conn);
    }

    /// Queues `doc` at the least busy peer that offered it, unless it is queued or
    /// asked already and `newcomer` (a peer that just offered it) is not less busy by
    /// more than one document.
    fn assign(&mut self, doc: DocumentId, newcomer: Option<ConnectionId>) {
        let Some(pull) = self.pulls.get(&doc) else {
            return;
        };
        let load = |conn: &ConnectionId| self.conns.get(conn).map_or(usize::MAX, Connection::load);
        let target = match (pull.assigned, newcomer) {
            (None, _) => pull.offered.keys().min_by_key(|c| load(c)).copied(),
            (Some(current), Some(new)) if current != new => {
                let queued = self
                    .conns
                    .get(&current)
                    .is_some_and(|c| c.queue.contains(&doc));
                (queued && load(&current) > load(&new).saturating_add(1)).then_some(new)
            }
            _ => None,
        };
        let Some(target) = target else {
            return;
        };
        let priority = pull.priority;
        if let Some(current) = pull.assigned
            && let Some(c) = self.conns.get_mut(&current)
        {
            c.queue.remove(&doc);
        }
        if let Some(c) = self.conns.get_mut(&target) {
            c.queue.push(priority, doc);
        }
        if let Some(pull) = self.pulls.get_mut(&doc) {
            pull.assigned = Some(target);
        }
    }

    /// Asks `conn` for all of `doc`, which we do not hold: a sync message from an empty
    /// document. The session starts when the answer arrives.
    pub(super) fn ask_for(&mut self, doc: DocumentId, conn: ConnectionId) {
        let Some(target) = self.peer_of(conn) else {
            return;
        };
        let Some(opening) = Automerge::new().generate_sync_message(&mut sync::State::new()) else {
            return;
        };
        let message = Message::Sync {
            sender_id: self.me(),
            target_id: target,
            document_id: doc,
            data: opening.encode(),
        };
        self.send(conn, message);
    }

    /// Whether telling `conn` our heads of `doc`, which we just pulled, would only make
    /// it answer with the same: it has no session about it, and it holds exactly what
    /// we now hold, or its reconciliation with us has not finished (it will compare the
    /// document then, with what we hold by that time).
    pub(super) fn pulled_and_known(&self, doc: &DocumentId, conn: ConnectionId) -> bool {
        let Some(pull) = self.pulls.get(doc) else {
            return false;
        };
        let Some(loaded) = self.docs.get(doc) else {
            return false;
        };
        if loaded.sessions.contains_key(&conn) {
            return false;
        }
        let reconciling = self
            .conns
            .get(&conn)
            .is_some_and(|c| c.is_peerdoc() && !c.reconcile_reported);
        reconciling || pull.offered.get(&conn) == Some(&HeadsDigest::of(&loaded.doc.get_heads()))
    }

    /// `doc`'s session with `conn` settled: a pull from it is over.
    pub(super) fn pull_settled(&mut self, doc: DocumentId, conn: ConnectionId) {
        if self
            .pulls
            .get(&doc)
            .is_some_and(|p| p.assigned == Some(conn))
        {
            self.pulls.remove(&doc);
        }
    }

    /// `conn` said it does not have `doc`: ask another peer that offered it.
    pub(super) fn pull_refused(&mut self, doc: DocumentId, conn: ConnectionId) {
        self.reassign(doc, conn);
    }

    /// `conn` closed: what it was asked for or had queued goes to other offerers.
    pub(super) fn pulls_closed(&mut self, conn: ConnectionId) {
        let docs: Vec<DocumentId> = self
            .pulls
            .iter()
            .filter(|(_, p)| p.offered.contains_key(&conn))
            .map(|(doc, _)| *doc)
            .collect();
        for doc in docs {
            self.reassign(doc, conn);
        }
    }

    /// Each tick: pulls whose document arrived are forgotten, and an ask whose peer has
    /// sent nothing for [`FETCH_PATIENCE_MS`] goes to another offerer.
    pub(super) fn expire_pulls(&mut self) {
        let now = self.now_ms;
        let mut stalled = Vec::new();
        let mut arrived = Vec::new();
        for (doc, pull) in &self.pulls {
            if self.catalog.contains_key(doc) {
                arrived.push(*doc);
                continue;
            }
            let Some(conn) = pull.assigned else {
                continue;
            };
            let quiet = self.conns.get(&conn).is_some_and(|c| {
                c.active.contains(doc) && now.saturating_sub(c.last_in_ms) >= FETCH_PATIENCE_MS
            });
            if quiet && pull.offered.len() > 1 {
                stalled.push((*doc, conn));
            }
        }
        for doc in arrived {
            self.pulls.remove(&doc);
        }
        for (doc, conn) in stalled {
            tracing::debug!(%doc, %conn, "peer asked for a document is quiet; asking another");
            self.reassign(doc, conn);
        }
    }

    /// Takes `doc` away from `conn` (it left, refused or went quiet) and gives it to
    /// another offerer; forgets it when none is left.
    fn reassign(&mut self, doc: DocumentId, conn: ConnectionId) {
        let Some(pull) = self.pulls.get_mut(&doc) else {
            return;
        };
        pull.offered.remove(&conn);
        let was_assigned = pull.assigned == Some(conn);
        if was_assigned {
            pull.assigned = None;
        }
        if pull.offered.is_empty() {
            self.pulls.remove(&doc);
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.queue.remove(&doc);
            if c.active.remove(&doc) {
                self.pump_queue(conn);
            }
        }
        if was_assigned && self.pulls.contains_key(&doc) {
            self.assign(doc, None);
            if let Some(target) = self.pulls.get(&doc).and_then(|p| p.assigned) {
                self.pump_queue(target);
            }
        }
    }

    /// The documents being pulled now: each with the peer it is queued at or asked
    /// from, and how many peers offered it.
    pub fn pulls(&self) -> Vec<(DocumentId, Option<ConnectionId>, usize)> {
        self.pulls
            .iter()
            .map(|(doc, p)| (*doc, p.assigned, p.offered.len()))
            .collect()
    }
}
