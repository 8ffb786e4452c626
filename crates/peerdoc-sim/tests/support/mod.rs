//! Test peers played by hand on raw connections of a [`Cluster`].

#![allow(dead_code)] // each test file uses part of it

use std::collections::BTreeMap;

use automerge::sync::SyncDoc;
use automerge::{Automerge, sync};
use peerdoc_core::wire::{Message, PeerMetadata};
use peerdoc_core::{ConnectionId, DocumentId, PeerId, StorageId};
use peerdoc_sim::Cluster;

/// A `join` from `sender`, offering the peerdoc extension when `peerdoc`.
pub(crate) fn join(sender: &str, peerdoc: bool) -> Vec<u8> {
    Message::Join {
        sender_id: PeerId::new(sender),
        supported_protocol_versions: vec!["1".into()],
        metadata: Some(PeerMetadata {
            storage_id: Some(StorageId::new(format!("{sender}-storage"))),
            is_ephemeral: false,
            peerdoc: peerdoc.then(peerdoc_core::wire::PeerdocCapabilities::default),
        }),
    }
    .encode()
}

/// Plays a stock automerge-repo sync server on a raw connection to node 0: answers
/// `join`, syncs every document node 0 sends with a real automerge document, and
/// answers a `request` for a document it does not hold with `doc-unavailable`.
pub(crate) struct StockServer {
    pub(crate) conn: ConnectionId,
    pub(crate) docs: BTreeMap<DocumentId, (Automerge, sync::State)>,
}

impl StockServer {
    pub(crate) fn new(conn: ConnectionId) -> Self {
        Self {
            conn,
            docs: BTreeMap::new(),
        }
    }

    /// Answers everything node 0 sent until it has nothing more to say.
    pub(crate) fn pump(&mut self, c: &mut Cluster) {
        while let Some((conn, bytes)) = c.raw_out.pop_front() {
            assert_eq!(conn, self.conn);
            let reply = match Message::decode(&bytes, usize::MAX).expect("decodes") {
                Message::Join { sender_id, .. } => Message::Peer {
                    sender_id: PeerId::new("stock-server"),
                    target_id: sender_id,
                    selected_protocol_version: "1".into(),
                    metadata: Some(PeerMetadata {
                        storage_id: Some(StorageId::new("stock-server-storage")),
                        is_ephemeral: false,
                        peerdoc: None,
                    }),
                },
                Message::Request {
                    sender_id,
                    document_id,
                    ..
                } if self
                    .docs
                    .get(&document_id)
                    .is_none_or(|(doc, _)| doc.get_heads().is_empty()) =>
                {
                    Message::DocUnavailable {
                        sender_id: PeerId::new("stock-server"),
                        target_id: sender_id,
                        document_id,
                    }
                }
                Message::Sync {
                    sender_id,
                    document_id,
                    data,
                    ..
                }
                | Message::Request {
                    sender_id,
                    document_id,
                    data,
                    ..
                } => {
                    let (doc, state) = self.docs.entry(document_id).or_default();
                    let message = sync::Message::decode(&data).expect("sync message");
                    doc.receive_sync_message(state, message).expect("applies");
                    let Some(answer) = doc.generate_sync_message(state) else {
                        continue;
                    };
                    Message::Sync {
                        sender_id: PeerId::new("stock-server"),
                        target_id: sender_id,
                        document_id,
                        data: answer.encode(),
                    }
                }
                _ => continue,
            };
            c.inject(0, self.conn, reply.encode());
        }
    }
}
