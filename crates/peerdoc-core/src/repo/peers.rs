//! The peer side of the engine: handshake, message dispatch, per-document sync and the
//! push queue. Reconciliation's rounds and what follows from their differences are in
//! `repo/reconciling.rs`.

use automerge::{Automerge, PatchLog, sync, sync::SyncDoc};
use rand::RngCore;

use crate::ids::{ConnectionId, DocumentId, PeerId};
use crate::persist;
use crate::reconcile::Reconciliation;
use crate::wire::{
    Message, PROTOCOL_VERSION, PeerMetadata, PeerdocCapabilities, WireError, decode_sync_data,
};

use super::connection::{Connection, PeerInfo};
use super::document::{LoadedDoc, Session};
use super::{ChangeOrigin, Event, Output, Repo, Waiter};

impl Repo {
    fn our_metadata(&self) -> PeerMetadata {
        PeerMetadata {
            storage_id: self.storage_id.clone(),
            is_ephemeral: false,
            peerdoc: Some(PeerdocCapabilities {
                version: self.config.extension_version,
                cloud: self.config.cloud,
                durability: self.config.cloud_durability.filter(|_| self.config.cloud),
            }),
        }
    }

    pub(super) fn me(&self) -> PeerId {
        self.config.peer_id.clone()
    }

    /// The peer id on `conn`, once its handshake finished.
    pub(super) fn peer_of(&self, conn: ConnectionId) -> Option<PeerId> {
        self.conns
            .get(&conn)
            .and_then(|c| c.peer.as_ref())
            .map(|p| p.peer_id.clone())
    }

    pub(super) fn connection_opened(&mut self, conn: ConnectionId, initiator: bool) {
        if self.conns.contains_key(&conn) {
            tracing::warn!(%conn, "connection id reused; ignored");
            return;
        }
        let seed = u64::from_le_bytes(self.config.peer_id.actor_prefix());
        self.conns.insert(conn, Connection::new(initiator, seed));
        if initiator {
            let join = Message::Join {
                sender_id: self.me(),
                supported_protocol_versions: vec![PROTOCOL_VERSION.to_string()],
                metadata: Some(self.our_metadata()),
            };
            self.send(conn, join);
        }
    }

    pub(super) fn connection_closed(&mut self, conn: ConnectionId) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        let storage = c.persistent_storage_id();
        let mut batch = crate::WriteBatch::new();
        for (doc_id, doc) in self.docs.iter_mut() {
            let Some(session) = doc.sessions.remove(&conn) else {
                continue;
            };
            // Only documents we hold have a sync state worth writing.
            if let Some(storage) = storage
                .as_ref()
                .filter(|_| self.catalog.contains_key(doc_id))
            {
                if session.dirty {
                    batch.put(
                        persist::sync_state_key(doc_id, storage),
                        session.state.encode(),
                    );
                }
                // Keep the state for a quick reconnect while the doc stays loaded.
                doc.stored_sync.insert(storage.clone(), session.state);
            }
        }
        let parked: Vec<(DocumentId, ConnectionId)> = self
            .parked
            .keys()
            .filter(|(_, c)| *c == conn)
            .copied()
            .collect();
        for key in parked {
            if let (Some(session), Some(storage)) = (self.parked.remove(&key), &storage)
                && session.dirty
                && self.catalog.contains_key(&key.0)
            {
                batch.put(
                    persist::sync_state_key(&key.0, storage),
                    session.state.encode(),
                );
            }
        }
        if !batch.is_empty() {
            self.write(None, None, Vec::new(), batch);
        }
        self.requests_closed(conn);
        self.fetches_closed(conn);
        self.pulls_closed(conn);
        self.forget_wanted_of(conn, c.wanted.into_keys());
        self.drop_introduced(c.introduced);
        self.event(Event::PeerDisconnected {
            conn,
            peer: c.peer.map(|p| p.peer_id),
        });
    }

    pub(super) fn disconnect(&mut self, conn: ConnectionId, reason: String, misbehaved: bool) {
        if misbehaved {
            tracing::warn!(%conn, %reason, "disconnecting misbehaving peer");
        } else {
            tracing::info!(%conn, %reason, "closing connection");
        }
        self.out.push(Output::Disconnect {
            conn,
            reason,
            misbehaved,
        });
        self.connection_closed(conn);
    }

    pub(super) fn misbehaved(&mut self, conn: ConnectionId, reason: String) {
        self.disconnect(conn, reason, true);
    }

    pub(super) fn send(&mut self, conn: ConnectionId, message: Message) {
        // A peer that may only hear of protected documents hears of no other: no sync,
        // no tombstone, no receipt, no ephemeral message about them.
        if let Some(doc) = message.document_id()
            && self.conns.get(&conn).is_some_and(|c| c.protected_only)
            && !self.protected.contains(doc)
        {
            return;
        }
        let bytes = message.encode();
        if let Some(c) = self.conns.get_mut(&conn) {
            c.messages_out += 1;
            c.bytes_out += bytes.len() as u64;
            self.out.push(Output::Send { conn, bytes });
        }
    }

    pub(super) fn message_received(
        &mut self,
        rng: &mut dyn RngCore,
        conn: ConnectionId,
        bytes: Vec<u8>,
    ) {
        let Some(c) = self.conns.get_mut(&conn) else {
            tracing::debug!(%conn, "frame from a closed connection dropped");
            return;
        };
        c.messages_in += 1;
        c.bytes_in += bytes.len() as u64;
        c.last_in_ms = self.now_ms;
        let message = match Message::decode(&bytes, self.config.max_message_size) {
            Ok(message) => message,
            Err(WireError::UnknownType(kind)) => {
                tracing::debug!(%conn, %kind, "unknown message type ignored");
                return;
            }
            Err(error) => {
                self.misbehaved(conn, format!("undecodable message: {error}"));
                return;
            }
        };
        self.peer_message(rng, conn, message);
    }

    fn peer_message(&mut self, rng: &mut dyn RngCore, conn: ConnectionId, message: Message) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let (ready, initiator) = (c.is_ready(), c.initiator);
        let peer = c.peer.clone();
        match message {
            Message::Join {
                sender_id,
                supported_protocol_versions,
                metadata,
            } => {
                if ready || initiator {
                    return self.misbehaved(conn, "unexpected join".into());
                }
                // No list at all is an old client: the stock server takes it as v1.
                if !supported_protocol_versions.is_empty()
                    && !supported_protocol_versions
                        .iter()
                        .any(|v| v == PROTOCOL_VERSION)
                {
                    let message = format!(
                        "unsupported protocol versions {supported_protocol_versions:?}; \
                         this peer speaks {PROTOCOL_VERSION}"
                    );
                    self.send(
                        conn,
                        Message::Error {
                            message,
                            sender_id: Some(self.me()),
                            target_id: Some(sender_id),
                        },
                    );
                    return self.disconnect(conn, "no common protocol version".into(), false);
                }
                let reply = Message::Peer {
                    sender_id: self.me(),
                    target_id: sender_id.clone(),
                    selected_protocol_version: PROTOCOL_VERSION.to_string(),
                    metadata: Some(self.our_metadata()),
                };
                self.send(conn, reply);
                self.peer_ready(conn, sender_id, metadata);
            }
            Message::Peer {
                sender_id,
                selected_protocol_version,
                metadata,
                ..
            } => {
                if ready || !initiator {
                    return self.misbehaved(conn, "unexpected peer message".into());
                }
                if selected_protocol_version != PROTOCOL_VERSION {
                    return self.misbehaved(
                        conn,
                        format!("peer selected unoffered version {selected_protocol_version:?}"),
                    );
                }
                self.peer_ready(conn, sender_id, metadata);
            }
            Message::Leave { .. } => self.disconnect(conn, "peer left".into(), false),
            Message::Error { message, .. } => {
                self.disconnect(conn, format!("peer reported an error: {message}"), false)
            }
            other => {
                let Some(peer) = peer else {
                    return self
                        .misbehaved(conn, format!("{} before the handshake", other.type_name()));
                };
                // A relayed ephemeral message keeps its author's sender id.
                if !matches!(other, Message::Ephemeral { .. })
                    && other.sender_id().is_some_and(|s| *s != peer.peer_id)
                {
                    return self.misbehaved(conn, "sender id differs from the handshake".into());
                }
                if other.target_id().is_some_and(|t| *t != self.config.peer_id) {
                    return self.misbehaved(conn, "message addressed to another peer".into());
                }
                self.ready_message(rng, conn, peer, other);
            }
        }
    }

    fn ready_message(
        &mut self,
        rng: &mut dyn RngCore,
        conn: ConnectionId,
        peer: PeerInfo,
        message: Message,
    ) {
        match message {
            Message::Request {
                document_id, data, ..
            } => self.peer_sync_or_wait(rng, conn, document_id, data, true),
            Message::Sync {
                document_id, data, ..
            } => self.peer_sync_or_wait(rng, conn, document_id, data, false),
            Message::DocUnavailable { document_id, .. } => {
                tracing::debug!(%conn, doc = %document_id, "peer does not have document");
                self.not_found_at(document_id, conn);
                self.pull_refused(document_id, conn);
                if let Some(c) = self.conns.get_mut(&conn)
                    && c.active.remove(&document_id)
                {
                    self.pump_queue(conn);
                }
            }
            Message::Ephemeral {
                sender_id,
                count,
                session_id,
                document_id,
                data,
                ..
            } => self.ephemeral_received(conn, sender_id, session_id, count, document_id, data),
            Message::RemoteHeadsChanged {
                document_id,
                new_heads,
                ..
            } => {
                for (storage_id, heads) in &new_heads {
                    self.event(Event::RemoteHeads {
                        doc: document_id,
                        storage_id: storage_id.clone(),
                        heads: heads.heads.clone(),
                        timestamp: heads.timestamp,
                    });
                }
                if peer.peerdoc {
                    self.receipts_relayed(conn, document_id, new_heads);
                }
            }
            Message::RemoteSubscriptionChange { add, remove, .. } => {
                self.remote_subscription_change(conn, add, remove)
            }
            Message::Reconcile { data, .. } => {
                if !peer.peerdoc {
                    return self.misbehaved(conn, "reconcile without negotiating it".into());
                }
                self.reconcile_received(conn, &data);
            }
            Message::Offer { documents, .. } => {
                if !self.conns.get(&conn).is_some_and(Connection::pulls) {
                    return self.misbehaved(conn, "offer without negotiating it".into());
                }
                self.offer_received(conn, documents);
            }
            Message::Deleted { document_id, .. } => {
                if !peer.peerdoc {
                    return self.misbehaved(conn, "tombstone without negotiating it".into());
                }
                if self.conns.get(&conn).is_some_and(|c| c.read_only) {
                    tracing::info!(%conn, doc = %document_id, "tombstone from a read-only peer ignored");
                    return;
                }
                self.peer_deleted(conn, document_id);
            }
            Message::Join { .. } | Message::Peer { .. } => {
                self.misbehaved(conn, "second handshake".into())
            }
            Message::Leave { .. } | Message::Error { .. } => {}
        }
    }

    fn peer_ready(&mut self, conn: ConnectionId, peer_id: PeerId, metadata: Option<PeerMetadata>) {
        let metadata = metadata.unwrap_or(PeerMetadata {
            storage_id: None,
            is_ephemeral: true,
            peerdoc: None,
        });
        let info = PeerInfo {
            peer_id: peer_id.clone(),
            storage_id: metadata.storage_id.clone(),
            ephemeral: metadata.is_ephemeral,
            peerdoc: metadata.peerdoc.is_some_and(|p| p.version >= 1),
            version: metadata
                .peerdoc
                .map_or(0, |p| p.version.min(self.config.extension_version)),
            cloud: metadata.peerdoc.is_some_and(|p| p.cloud),
            cloud_durability: metadata.peerdoc.and_then(|p| p.durability),
        };
        let peerdoc = info.peerdoc;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.peer = Some(info);
        let initiator = c.initiator;
        self.event(Event::PeerConnected {
            conn,
            peer: peer_id.clone(),
            storage_id: metadata.storage_id,
            peerdoc,
        });
        if peerdoc {
            let config = self.config.reconcile.clone();
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            if initiator {
                let (state, payload) = Reconciliation::initiate(&self.items, &config);
                c.reconcile = Some(state);
                let message = Message::Reconcile {
                    sender_id: self.config.peer_id.clone(),
                    target_id: peer_id,
                    data: payload,
                };
                self.send(conn, message);
            } else {
                c.reconcile = Some(Reconciliation::respond(&config));
            }
        } else if self.config.announce_to_plain_peers {
            let live: Vec<(i32, DocumentId)> = self
                .catalog
                .iter()
                .filter(|(_, m)| !m.deleted)
                .map(|(id, m)| (m.priority, *id))
                .collect();
            if let Some(c) = self.conns.get_mut(&conn) {
                for (priority, id) in live {
                    c.queue.push(priority, id);
                }
            }
            self.pump_queue(conn);
        }
        self.queue_unconfirmed(conn);
    }

    /// Starts queued syncs with `conn` up to the per-peer concurrency bound.
    pub(super) fn pump_queue(&mut self, conn: ConnectionId) {
        loop {
            let limit = self.config.max_concurrent_syncs_per_peer;
            let Some(c) = self.conns.get_mut(&conn) else {
                return;
            };
            if c.active.len() >= limit {
                return;
            }
            let Some(doc) = c.queue.pop_first() else {
                return;
            };
            let pull = match self.catalog.get(&doc) {
                Some(meta) if meta.deleted => continue,
                Some(_) => false,
                None if self.pulling(&doc) => true,
                None => continue,
            };
            if let Some(c) = self.conns.get_mut(&conn) {
                c.active.insert(doc);
            }
            let session = self
                .docs
                .get(&doc)
                .is_some_and(|d| d.sessions.contains_key(&conn));
            if pull && !session {
                self.ask_for(doc, conn);
            } else if self.docs.contains_key(&doc) {
                self.send_sync(doc, conn);
                // The loop goes on to fill the slot if it was released.
                self.settle_if_in_sync(doc, conn);
            } else {
                self.start_load(doc, Waiter::QueuedSync(conn));
            }
        }
    }

    /// Releases `doc`'s queue slot with `conn` if their session is settled; says whether
    /// it did.
    pub(super) fn settle_if_in_sync(&mut self, doc: DocumentId, conn: ConnectionId) -> bool {
        let in_sync = self
            .docs
            .get(&doc)
            .and_then(|d| d.sessions.get(&conn))
            .is_some_and(|s| s.in_sync);
        in_sync
            && self
                .conns
                .get_mut(&conn)
                .is_some_and(|c| c.active.remove(&doc))
    }

    /// Counts a message that must wait for a load; disconnects a peer over its bound.
    pub(super) fn admit_inbound(&mut self, conn: ConnectionId) -> bool {
        let limit = self.config.max_pending_per_peer;
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        if c.pending_inbound >= limit {
            self.misbehaved(
                conn,
                format!("more than {limit} messages waiting for documents to load"),
            );
            return false;
        }
        c.pending_inbound += 1;
        true
    }

    fn peer_sync_or_wait(
        &mut self,
        rng: &mut dyn RngCore,
        conn: ConnectionId,
        doc: DocumentId,
        data: Vec<u8>,
        request: bool,
    ) {
        if self.conns.get(&conn).is_some_and(|c| c.protected_only) && !self.protected.contains(&doc)
        {
            tracing::debug!(%conn, %doc, "message about an unprotected document ignored");
            return;
        }
        match self.catalog.get(&doc) {
            Some(meta) if meta.deleted => {
                if self.conns.get(&conn).is_some_and(Connection::is_peerdoc) {
                    self.send_tombstone(conn, doc);
                } else {
                    self.send_unavailable(conn, doc);
                }
            }
            // Being found for someone: this asker waits for the answer too.
            None if request && self.finding.contains_key(&doc) => {
                self.forward_request(rng, conn, doc, &data)
            }
            _ if self.docs.contains_key(&doc) => self.peer_sync(conn, doc, data),
            Some(_) => {
                if self.admit_inbound(conn) {
                    self.start_load(doc, Waiter::PeerSync { conn, data });
                }
            }
            // A read-only peer cannot introduce a document: its changes are never applied.
            None if self.conns.get(&conn).is_some_and(|c| c.read_only)
                && !self.protected.contains(&doc) =>
            {
                self.send_unavailable(conn, doc);
                self.remember_wanted(conn, doc, &data);
            }
            None if request => self.forward_request(rng, conn, doc, &data),
            // A sync message from a peer that lacks the document too (a stock server
            // answering our request after it said `doc-unavailable`): nothing to keep.
            None if super::find::says_it_lacks(&data) => {}
            None => {
                // A peer shares a document we have never seen. It stays tentative (in
                // memory, not in the catalog) until a change arrives: a document whose
                // origin crashed before saving it must not linger as an empty ghost.
                if !self.admit_introduced(conn, doc) {
                    return;
                }
                let use_tick = self.tick_use();
                let prefix = self.config.actor_prefix;
                self.docs
                    .insert(doc, LoadedDoc::new(Automerge::new(), rng, use_tick, prefix));
                self.peer_sync(conn, doc, data);
            }
        }
    }

    pub(super) fn send_unavailable(&mut self, conn: ConnectionId, doc: DocumentId) {
        let Some(target) = self.peer_of(conn) else {
            return;
        };
        let message = Message::DocUnavailable {
            sender_id: self.me(),
            target_id: target,
            document_id: doc,
        };
        self.send(conn, message);
    }

    /// A loaded document and its sync session with `conn` (created if needed).
    pub(super) fn doc_and_session(
        &mut self,
        doc_id: DocumentId,
        conn: ConnectionId,
    ) -> Option<(&mut Automerge, &mut Session)> {
        let protected = self.protected.contains(&doc_id);
        let doc = self.docs.get_mut(&doc_id)?;
        Self::ensure_session(&self.conns, &mut self.parked, doc_id, doc, conn, protected);
        let LoadedDoc {
            doc: automerge,
            sessions,
            ..
        } = doc;
        Some((automerge, sessions.get_mut(&conn)?))
    }

    /// Makes sure `doc` has a sync session with `conn`: the one parked at eviction, or
    /// one resumed from the persisted state, or a fresh one.
    fn ensure_session(
        conns: &std::collections::BTreeMap<ConnectionId, Connection>,
        parked: &mut std::collections::BTreeMap<(DocumentId, ConnectionId), Session>,
        doc_id: DocumentId,
        doc: &mut LoadedDoc,
        conn: ConnectionId,
        protected: bool,
    ) {
        if doc.sessions.contains_key(&conn) {
            return;
        }
        let read_only = !protected && conns.get(&conn).is_some_and(|c| c.read_only);
        if let Some(mut session) = parked.remove(&(doc_id, conn)) {
            session.state.read_only = read_only;
            doc.sessions.insert(conn, session);
            return;
        }
        let storage = conns.get(&conn).and_then(Connection::persistent_storage_id);
        let mut state = storage
            .and_then(|s| doc.stored_sync.remove(&s))
            // Only the persistent part (shared heads) survives a reconnect.
            .map(|s| sync::State::decode(&s.encode()).unwrap_or_default())
            .unwrap_or_default();
        // A read-only peer's changes are neither requested nor applied (automerge's
        // read-only sync, as samod's read-only share access does).
        state.read_only = read_only;
        doc.sessions.insert(conn, Session::new(state));
    }

    pub(super) fn peer_sync(&mut self, conn: ConnectionId, doc_id: DocumentId, data: Vec<u8>) {
        let message = match decode_sync_data(&data) {
            Ok(message) => message,
            Err(error) => return self.misbehaved(conn, error.to_string()),
        };
        self.touch(&doc_id);
        let Some((automerge, session)) = self.doc_and_session(doc_id, conn) else {
            return;
        };
        let before = automerge.get_heads();
        let reported_before = session.state.their_heads.clone();
        let mut log = PatchLog::active();
        if let Err(error) =
            automerge.receive_sync_message_log_patches(&mut session.state, message, &mut log)
        {
            return self.misbehaved(conn, format!("sync message rejected: {error}"));
        }
        session.dirty = true;
        let reported = session.state.their_heads.clone();
        let after = automerge.get_heads();
        if after != before {
            let patches = automerge.make_patches(&mut log);
            self.doc_changed(doc_id, patches, ChangeOrigin::Remote(conn), Vec::new());
        } else {
            self.send_sync(doc_id, conn);
        }
        self.check_in_sync(doc_id, conn);
        self.peer_heads_reported(doc_id, conn, reported_before, reported);
    }

    /// Sends the next sync message about `doc` to `conn`, if there is one.
    ///
    /// Not before the document's heads are durable: a sync message carries our heads,
    /// and a peer (the cloud's receipts, a device deciding it is safe to wipe) may take
    /// them as proof that we hold those changes. Until the write completes the message
    /// is owed, and [`Self::release_held`] sends it.
    pub(super) fn send_sync(&mut self, doc_id: DocumentId, conn: ConnectionId) {
        if self.conns.get(&conn).is_some_and(|c| c.protected_only)
            && !self.protected.contains(&doc_id)
        {
            return;
        }
        let Some(target) = self.peer_of(conn) else {
            return;
        };
        let Some(doc) = self.docs.get_mut(&doc_id) else {
            return;
        };
        if !doc.heads_durable() {
            doc.held.insert(conn);
            return;
        }
        if self.wait_for_fetch(doc_id, conn) {
            return;
        }
        let Some((automerge, session)) = self.doc_and_session(doc_id, conn) else {
            return;
        };
        if let Some(message) = automerge.generate_sync_message(&mut session.state) {
            let message = Message::Sync {
                sender_id: self.config.peer_id.clone(),
                target_id: target,
                document_id: doc_id,
                data: message.encode(),
            };
            self.send(conn, message);
        }
    }

    /// Sends the sync messages held back while `doc`'s heads were not yet durable.
    pub(super) fn release_held(&mut self, doc_id: DocumentId) {
        let Some(doc) = self.docs.get_mut(&doc_id) else {
            return;
        };
        if doc.held.is_empty() || !doc.heads_durable() {
            return;
        }
        let held = std::mem::take(&mut doc.held);
        for conn in &held {
            // A message received while ours was held may have made automerge think the
            // peer already knows our heads (it records heads equal to its own as "sent"),
            // but the peer never heard them from us and waits to see them: send them.
            if let Some(session) = doc.sessions.get_mut(conn) {
                session.state.last_sent_heads.clear();
            }
        }
        for conn in held {
            self.send_sync(doc_id, conn);
        }
    }

    /// Pushes a changed document to every peer that should hear about it.
    pub(super) fn push_to_peers(&mut self, doc_id: DocumentId) {
        let announce = self.config.announce_to_plain_peers;
        let Some(doc) = self.docs.get(&doc_id) else {
            return;
        };
        let targets: Vec<ConnectionId> = self
            .conns
            .iter()
            .filter(|(id, c)| {
                c.is_ready() && (c.is_peerdoc() || announce || doc.sessions.contains_key(*id))
            })
            .filter(|(id, _)| !self.pulled_and_known(&doc_id, **id))
            .map(|(id, _)| *id)
            .collect();
        for conn in targets {
            self.send_sync(doc_id, conn);
        }
    }

    fn check_in_sync(&mut self, doc_id: DocumentId, conn: ConnectionId) {
        let Some(doc) = self.docs.get_mut(&doc_id) else {
            return;
        };
        let mut ours = doc.doc.get_heads();
        ours.sort();
        let Some(session) = doc.sessions.get_mut(&conn) else {
            return;
        };
        let Some(mut theirs) = session.state.their_heads.clone() else {
            return;
        };
        theirs.sort();
        if theirs != ours || session.in_sync {
            return;
        }
        session.in_sync = true;
        self.fetch_settled(doc_id, conn);
        self.pull_settled(doc_id, conn);
        self.record_receipt(doc_id, conn, &ours);
        self.share_receipts(doc_id, conn);
        self.event(Event::DocumentSynced {
            doc: doc_id,
            conn,
            heads: ours,
        });
        if let Some(c) = self.conns.get_mut(&conn)
            && c.active.remove(&doc_id)
        {
            self.pump_queue(conn);
        }
    }
}
