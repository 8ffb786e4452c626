//! Reconciliation with a peerdoc peer: its rounds, and what each difference it finds
//! leads to (`docs/protocol.md`, `peerdoc/reconcile`). The rounds themselves are computed
//! in `crate::reconcile`.

use crate::ids::ConnectionId;
use crate::reconcile::{Difference, Reconciliation};
use crate::wire::{Message, Offered};

use super::connection::Connection;
use super::{ChangeOrigin, Event, Repo};

impl Repo {
    /// A reconciliation payload from `conn`: answer it, and act on the differences
    /// it settled (before the answer, so a peer that pulls hears our offers first).
    pub(super) fn reconcile_received(&mut self, conn: ConnectionId, data: &[u8]) {
        let config = self.config.reconcile.clone();
        let items = &self.items;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let Some(peer_id) = c.peer.as_ref().map(|p| p.peer_id.clone()) else {
            return;
        };
        let state = c
            .reconcile
            .get_or_insert_with(|| Reconciliation::respond(&config));
        let reply = match state.receive(items, data) {
            Ok(reply) => reply,
            Err(error) => return self.misbehaved(conn, format!("bad reconcile payload: {error}")),
        };
        let differences = state.take_differences();
        let done = state.is_done();
        let rounds = state.rounds();
        c.reconcile_differences += differences.len();
        let total = c.reconcile_differences;
        let report = done && !c.reconcile_reported;
        if report {
            c.reconcile_reported = true;
        }
        // Differences first: a peer that pulls hears the priorities we offer before our
        // reply tells it which documents it lacks, and asks for those first.
        self.handle_differences(conn, differences);
        if let Some(payload) = reply {
            let message = Message::Reconcile {
                sender_id: self.config.peer_id.clone(),
                target_id: peer_id,
                data: payload,
            };
            self.send(conn, message);
        }
        if report {
            self.event(Event::ReconcileFinished {
                conn,
                differences: total,
                rounds,
            });
        }
    }

    /// Each document the two sides disagree on: a tombstone sent or applied, an offer
    /// or a queued push for one the peer lacks, an ask for one we lack.
    fn handle_differences(&mut self, conn: ConnectionId, differences: Vec<Difference>) {
        let pulls = self.conns.get(&conn).is_some_and(Connection::pulls);
        let (mut offers, mut lacked) = (Vec::new(), Vec::new());
        for difference in differences {
            let doc = difference.document_id;
            let theirs_tombstone = difference.theirs.is_some_and(|d| d.is_tombstone());
            match self.catalog.get(&doc).map(|m| (m.deleted, m.priority)) {
                Some((true, _)) if !theirs_tombstone => self.send_tombstone(conn, doc),
                Some((true, _)) => {}
                Some((false, _)) if theirs_tombstone => self.peer_deleted(conn, doc),
                // The peer lacks it: it asks for it, from us or another peer. It learns
                // the document from reconciliation; an offer tells it the priority.
                Some((false, priority)) if pulls && difference.theirs.is_none() => {
                    if let Some(digest) = difference.ours
                        && priority != 0
                    {
                        offers.push(Offered {
                            document_id: doc,
                            priority,
                            digest,
                        });
                    }
                }
                Some((false, priority)) => {
                    if let Some(c) = self.conns.get_mut(&conn) {
                        c.queue.push(priority, doc);
                    }
                }
                None if theirs_tombstone => {
                    self.apply_tombstone(doc, ChangeOrigin::Remote(conn), None)
                }
                // We lack it: a peer that pulls waits to be asked (`repo/pull.rs`); an
                // older one sends it.
                None => {
                    if let Some(digest) = difference.theirs.filter(|_| pulls) {
                        lacked.push(Offered {
                            document_id: doc,
                            priority: 0,
                            digest,
                        });
                    }
                }
            }
        }
        self.send_offers(conn, offers);
        if !lacked.is_empty() {
            self.offer_received(conn, lacked);
        }
        self.pump_queue(conn);
    }
}
