//! Asking connected peers for a document we do not have (automerge-repo's `request`).
//!
//! Between peerdoc peers reconciliation finds every document, so this is for the rest
//! of the automerge-repo world: a stock sync server never says what it holds, so a
//! document created at the office is reached by its id. The document stays tentative
//! (in memory, not in the catalog) until its first change arrives; then it is adopted
//! and the waiting commands are answered once it is durable. Every asked peer saying
//! `doc-unavailable` (or closing), or the deadline passing, answers "not found".

use std::collections::BTreeSet;

use automerge::{Automerge, ReadDoc, sync, sync::SyncDoc};
use rand::RngCore;

use crate::ids::{ConnectionId, DocumentId};
use crate::wire::Message;

use super::document::LoadedDoc;
use super::{CommandId, Reply, Repo, RepoError};

/// A document being asked for.
#[derive(Debug)]
pub(super) struct Finding {
    /// Commands waiting for it.
    waiters: Vec<CommandId>,
    /// Peers asked that have not answered `doc-unavailable`.
    awaiting: BTreeSet<ConnectionId>,
    /// When to give up, in the engine's clock.
    deadline_ms: u64,
}

/// Whether a sync message says its sender has no change of the document (no heads, no
/// changes). A stock sync server sends one after `doc-unavailable`, in answer to our
/// `request`; adopting the empty document it describes would leave one more tentative
/// document in memory per failed find. An undecodable message is left to the caller.
pub(super) fn says_it_lacks(data: &[u8]) -> bool {
    sync::Message::decode(data).is_ok_and(|m| m.heads.is_empty() && m.changes.is_empty())
}

impl Repo {
    /// `Command::Find` for a document not in the catalog.
    pub(super) fn find_from_peers(
        &mut self,
        rng: &mut dyn RngCore,
        id: CommandId,
        doc: DocumentId,
    ) {
        if let Some(finding) = self.finding.get_mut(&doc) {
            finding.waiters.push(id);
            return;
        }
        let targets: Vec<ConnectionId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.is_ready())
            .map(|(id, _)| *id)
            .collect();
        if targets.is_empty() {
            return self.reply(id, Err(RepoError::DocumentNotFound(doc)));
        }
        if !self.docs.contains_key(&doc) {
            let use_tick = self.tick_use();
            let prefix = self.config.actor_prefix;
            self.docs
                .insert(doc, LoadedDoc::new(Automerge::new(), rng, use_tick, prefix));
        }
        self.finding.insert(
            doc,
            Finding {
                waiters: vec![id],
                awaiting: targets.iter().copied().collect(),
                deadline_ms: self.now_ms + self.config.find_timeout_ms,
            },
        );
        for conn in targets {
            self.send_request(doc, conn);
        }
    }

    /// A `request`: a sync message from a peer that lacks the document.
    fn send_request(&mut self, doc_id: DocumentId, conn: ConnectionId) {
        let Some(target) = self.peer_of(conn) else {
            return;
        };
        let sender = self.config.peer_id.clone();
        let Some((automerge, session)) = self.doc_and_session(doc_id, conn) else {
            return;
        };
        if let Some(message) = automerge.generate_sync_message(&mut session.state) {
            let message = Message::Request {
                sender_id: sender,
                target_id: target,
                document_id: doc_id,
                data: message.encode(),
            };
            self.send(conn, message);
        }
    }

    /// The document arrived (it is being saved): its waiters get `Opened` once durable.
    pub(super) fn found(&mut self, doc: DocumentId) -> Vec<(CommandId, Reply)> {
        let Some(finding) = self.finding.remove(&doc) else {
            return Vec::new();
        };
        let heads = self
            .docs
            .get(&doc)
            .map(|d| d.doc.get_heads())
            .unwrap_or_default();
        finding
            .waiters
            .into_iter()
            .map(|id| {
                (
                    id,
                    Reply::Opened {
                        doc,
                        heads: heads.clone(),
                    },
                )
            })
            .collect()
    }

    /// `conn` does not have `doc` (it said so, or it closed).
    pub(super) fn not_found_at(&mut self, doc: DocumentId, conn: ConnectionId) {
        let Some(finding) = self.finding.get_mut(&doc) else {
            return;
        };
        finding.awaiting.remove(&conn);
        if finding.awaiting.is_empty() {
            self.give_up(doc, RepoError::DocumentNotFound(doc));
        }
    }

    /// A connection closed: it will not answer any request.
    pub(super) fn requests_closed(&mut self, conn: ConnectionId) {
        let docs: Vec<DocumentId> = self
            .finding
            .iter()
            .filter(|(_, f)| f.awaiting.contains(&conn))
            .map(|(d, _)| *d)
            .collect();
        for doc in docs {
            self.not_found_at(doc, conn);
        }
    }

    /// Answers the searches whose deadline passed.
    pub(super) fn expire_requests(&mut self) {
        let now = self.now_ms;
        let expired: Vec<DocumentId> = self
            .finding
            .iter()
            .filter(|(_, f)| f.deadline_ms <= now)
            .map(|(d, _)| *d)
            .collect();
        for doc in expired {
            self.give_up(doc, RepoError::DocumentNotFound(doc));
        }
    }

    /// Stops looking for `doc`: its waiters get `error`, and the tentative document
    /// goes unless something arrived meanwhile.
    pub(super) fn give_up(&mut self, doc: DocumentId, error: RepoError) {
        let Some(finding) = self.finding.remove(&doc) else {
            return;
        };
        for id in finding.waiters {
            self.reply(id, Err(error.clone()));
        }
        let tentative = !self.catalog.contains_key(&doc)
            && self.docs.get(&doc).is_some_and(|d| {
                d.doc.get_heads().is_empty() && d.doc.get_missing_deps(&[]).is_empty()
            });
        if tentative {
            self.docs.remove(&doc);
            self.parked.retain(|(d, _), _| *d != doc);
        }
    }
}
