//! Remote heads subscriptions for plain automerge-repo peers: how a JS app shows
//! "synced with the cloud".
//!
//! An automerge-repo app with `enableRemoteHeadsGossiping` calls
//! `repo.subscribeToRemotes([storageId])`; its repo sends `remote-subscription-change`
//! with `add: [storageId]`, and from then on expects `remote-heads-changed` whenever the
//! peer it talks to learns new heads of a document it has open at that storage
//! (automerge-repo's `RemoteHeadsSubscriptions`). Here the engine knows two kinds of
//! heads per (document, storage id):
//!
//! - a connected peer's: the heads its sync messages report, for a peer with that
//!   (persistent) storage id, a cloud endpoint or another device;
//! - a cloud receipt: the heads a cloud confirmed, kept in the document's metadata and
//!   relayed between peerdoc peers (`repo/receipts.rs`), so a device that is not
//!   connected to the cloud can still tell its apps what the cloud holds.
//!
//! A subscribing peer hears about documents it has a sync session for, when it subscribes
//! (what is known now) and whenever either kind of heads changes. At most
//! [`MAX_REMOTE_SUBSCRIPTIONS`] storage ids per connection are kept; the rest of a longer
//! list is ignored. Nothing here is persisted; a connection's subscriptions go with it.

use std::collections::BTreeMap;

use automerge::ChangeHash;

use crate::ids::{ConnectionId, DocumentId, StorageId};
use crate::wire::{self, Message, RemoteHeads};

use super::Repo;

/// Storage ids one connection may subscribe to (an app watches its cloud, maybe two).
pub const MAX_REMOTE_SUBSCRIPTIONS: usize = 64;

impl Repo {
    /// `remote-subscription-change` from `conn`.
    pub(super) fn remote_subscription_change(
        &mut self,
        conn: ConnectionId,
        add: Vec<StorageId>,
        remove: Vec<StorageId>,
    ) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        for storage in &remove {
            c.remote_subscriptions.remove(storage);
        }
        let mut added = Vec::new();
        for storage in add {
            if c.remote_subscriptions.contains(&storage) {
                continue;
            }
            if c.remote_subscriptions.len() >= MAX_REMOTE_SUBSCRIPTIONS {
                tracing::debug!(%conn, "too many remote heads subscriptions; the rest ignored");
                break;
            }
            c.remote_subscriptions.insert(storage.clone());
            added.push(storage);
        }
        if added.is_empty() {
            return;
        }
        // What we know now, for the documents the peer has open.
        let docs: Vec<DocumentId> = self
            .docs
            .iter()
            .filter(|(_, d)| d.sessions.contains_key(&conn))
            .map(|(id, _)| *id)
            .chain(
                self.parked
                    .keys()
                    .filter(|(_, c)| *c == conn)
                    .map(|(d, _)| *d),
            )
            .collect();
        for doc in docs {
            for storage in &added {
                if let Some((heads, at_ms)) = self.known_remote_heads(doc, storage) {
                    self.send_remote_heads(conn, doc, storage, &heads, at_ms);
                }
            }
        }
    }

    /// The freshest heads of `doc` we know at `storage`: a connected peer's with that
    /// storage id, or else the cloud's receipt.
    fn known_remote_heads(
        &self,
        doc: DocumentId,
        storage: &StorageId,
    ) -> Option<(Vec<ChangeHash>, u64)> {
        let connected = self.conns.iter().find_map(|(id, c)| {
            (c.persistent_storage_id().as_ref() == Some(storage)).then_some(*id)
        });
        if let Some(peer) = connected {
            let session = self
                .docs
                .get(&doc)
                .and_then(|d| d.sessions.get(&peer))
                .or_else(|| self.parked.get(&(doc, peer)));
            if let Some(heads) = session.and_then(|s| s.state.their_heads.clone()) {
                return Some((heads, self.now_ms));
            }
        }
        let receipt = self.catalog.get(&doc)?.receipts.get(storage.as_str())?;
        let heads: Option<Vec<ChangeHash>> = receipt.heads.iter().map(|h| h.parse().ok()).collect();
        Some((heads?, receipt.at_ms))
    }

    /// Heads of `doc` at `storage` changed (a peer with that storage id reported them, or
    /// a receipt arrived): tell the peers subscribed to `storage` that have `doc` open.
    pub(super) fn remote_heads_changed(
        &mut self,
        doc: DocumentId,
        storage: &StorageId,
        heads: &[ChangeHash],
        at_ms: u64,
    ) {
        let loaded = self.docs.get(&doc);
        let targets: Vec<ConnectionId> = self
            .conns
            .iter()
            .filter(|(id, c)| {
                c.remote_subscriptions.contains(storage)
                    && c.persistent_storage_id().as_ref() != Some(storage)
                    && (loaded.is_some_and(|d| d.sessions.contains_key(*id))
                        || self.parked.contains_key(&(doc, **id)))
            })
            .map(|(id, _)| *id)
            .collect();
        for conn in targets {
            self.send_remote_heads(conn, doc, storage, heads, at_ms);
        }
    }

    /// The peer on `conn` reported heads of `doc` in a sync message (`before` those it
    /// reported last): if they changed, peers
    /// subscribed to its storage id hear of them.
    pub(super) fn peer_heads_reported(
        &mut self,
        doc: DocumentId,
        conn: ConnectionId,
        before: Option<Vec<ChangeHash>>,
        heads: Option<Vec<ChangeHash>>,
    ) {
        if heads == before || !self.has_remote_subscribers() {
            return;
        }
        let (Some(heads), Some(storage)) = (
            heads,
            self.conns
                .get(&conn)
                .and_then(|c| c.persistent_storage_id()),
        ) else {
            return;
        };
        let now = self.now_ms;
        self.remote_heads_changed(doc, &storage, &heads, now);
    }

    /// Whether any connection subscribed to any storage id (so reported heads are worth
    /// looking at).
    fn has_remote_subscribers(&self) -> bool {
        self.conns
            .values()
            .any(|c| !c.remote_subscriptions.is_empty())
    }

    fn send_remote_heads(
        &mut self,
        conn: ConnectionId,
        doc: DocumentId,
        storage: &StorageId,
        heads: &[ChangeHash],
        at_ms: u64,
    ) {
        let Some(target) = self.peer_of(conn) else {
            return;
        };
        let new_heads = BTreeMap::from([(
            storage.clone(),
            RemoteHeads {
                heads: wire::encode_heads(heads),
                timestamp: at_ms,
                durability: None,
            },
        )]);
        let message = Message::RemoteHeadsChanged {
            sender_id: self.config.peer_id.clone(),
            target_id: target,
            document_id: doc,
            new_heads,
        };
        // `send` keeps unprotected documents from protected-only peers.
        self.send(conn, message);
    }
}
