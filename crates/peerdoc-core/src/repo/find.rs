//! Asking connected peers for a document we do not have (automerge-repo's `request`).
//!
//! Between peerdoc peers reconciliation finds every document, so this is for the rest
//! of the automerge-repo world: a stock sync server never says what it holds, so a
//! document created at the office is reached by its id. The document stays tentative
//! (in memory, not in the catalog) until its first change arrives; then it is adopted
//! and the waiting commands are answered once it is durable. Every asked peer saying
//! `doc-unavailable` (or closing), or the deadline passing, answers "not found".

use std::collections::BTreeSet;

use automerge::{Automerge, ReadDoc, sync::SyncDoc};
use rand::RngCore;

use crate::ids::{ConnectionId, DocumentId};
use crate::wire::{Message, decode_sync_data};

use super::document::LoadedDoc;
use super::{CommandId, Reply, Repo, RepoError};

/// A document being asked for.
#[derive(Debug)]
pub(super) struct Finding {
    /// Commands waiting for it.
    waiters: Vec<CommandId>,
    /// Plain peers (apps) whose `request` we passed on: they hear `doc-unavailable`
    /// only if no peer has it, and get it by late delivery when it arrives.
    askers: BTreeSet<ConnectionId>,
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
    decode_sync_data(data).is_ok_and(|m| m.heads.is_empty() && m.changes.is_empty())
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
        self.start_finding(rng, doc, targets, vec![id], BTreeSet::new());
    }

    fn start_finding(
        &mut self,
        rng: &mut dyn RngCore,
        doc: DocumentId,
        targets: Vec<ConnectionId>,
        waiters: Vec<CommandId>,
        askers: BTreeSet<ConnectionId>,
    ) {
        if !self.docs.contains_key(&doc) {
            let use_tick = self.tick_use();
            let prefix = self.config.actor_prefix;
            self.docs
                .insert(doc, LoadedDoc::new(Automerge::new(), rng, use_tick, prefix));
        }
        self.finding.insert(
            doc,
            Finding {
                waiters,
                askers,
                awaiting: targets.iter().copied().collect(),
                deadline_ms: self.now_ms + self.config.find_timeout_ms,
            },
        );
        for conn in targets {
            self.send_request(doc, conn);
        }
    }

    /// A plain peer (an app) asked for `doc`, which is not here: ask the peers that
    /// may have it (peerdoc peers, and endpoints this device dialed, such as a sync
    /// server cloud) before answering, as a stock sync server asks its own peers. The
    /// app hears `doc-unavailable` only when none has it; either way it is remembered
    /// for late delivery. A peerdoc peer's request is answered at once (peerdoc peers
    /// reconcile; passing requests between daemons could go round in circles).
    pub(super) fn forward_request(
        &mut self,
        rng: &mut dyn RngCore,
        asker: ConnectionId,
        doc: DocumentId,
        request: &[u8],
    ) {
        let plain = self
            .conns
            .get(&asker)
            .is_some_and(|c| !c.is_peerdoc() && !c.protected_only);
        if plain {
            self.remember_wanted(asker, doc, request);
        }
        if let Some(finding) = self.finding.get_mut(&doc) {
            if plain {
                finding.askers.insert(asker);
            } else {
                self.send_unavailable(asker, doc);
            }
            return;
        }
        let targets: Vec<ConnectionId> = self
            .conns
            .iter()
            .filter(|(id, c)| {
                **id != asker
                    && c.is_ready()
                    && !c.read_only
                    && !c.protected_only
                    && (c.is_peerdoc() || c.initiator)
            })
            .map(|(id, _)| *id)
            .collect();
        if !plain || targets.is_empty() {
            return self.send_unavailable(asker, doc);
        }
        self.start_finding(rng, doc, targets, Vec::new(), BTreeSet::from([asker]));
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

    /// A connection closed: it will not answer any request, nor wait for one.
    pub(super) fn requests_closed(&mut self, conn: ConnectionId) {
        for finding in self.finding.values_mut() {
            finding.askers.remove(&conn);
        }
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
        // The apps that asked hear it now; they stay remembered for late delivery.
        for asker in finding.askers {
            self.send_unavailable(asker, doc);
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
