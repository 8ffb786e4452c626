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
        // Frames for other raw connections (plain clients) stay queued for them.
        let (mine, others): (Vec<_>, Vec<_>) = c
            .raw_out
            .drain(..)
            .partition(|(conn, _)| *conn == self.conn);
        c.raw_out.extend(others);
        let mut mine: std::collections::VecDeque<_> = mine.into();
        while let Some((_, bytes)) = mine.pop_front().or_else(|| {
            let at = c.raw_out.iter().position(|(conn, _)| *conn == self.conn)?;
            c.raw_out.remove(at)
        }) {
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

/// A plain automerge-repo client (a JS app's repo, as far as the engine can tell) on a
/// raw connection to node `node`: it joins without peerdoc's extension, asks for
/// documents, syncs them with real automerge documents and records every message it
/// receives.
pub(crate) struct PlainClient {
    pub(crate) node: usize,
    pub(crate) conn: ConnectionId,
    pub(crate) peer_id: PeerId,
    pub(crate) docs: BTreeMap<DocumentId, (Automerge, sync::State)>,
    /// Every message received, in order.
    pub(crate) inbox: Vec<Message>,
}

impl PlainClient {
    /// Connects and finishes the handshake.
    pub(crate) fn connect(c: &mut Cluster, node: usize, name: &str) -> Self {
        let conn = c.connect_raw(node, false);
        let mut client = Self {
            node,
            conn,
            peer_id: PeerId::new(name),
            docs: BTreeMap::new(),
            inbox: Vec::new(),
        };
        c.inject(node, conn, join(name, false));
        client.pump(c);
        assert!(
            matches!(client.inbox.first(), Some(Message::Peer { .. })),
            "{name} got no `peer`: {:?}",
            client.inbox
        );
        client
    }

    /// The node's peer id (the `targetId` of everything the client sends).
    pub(crate) fn server(&self, c: &Cluster) -> PeerId {
        c.nodes[self.node].repo.config().peer_id.clone()
    }

    pub(crate) fn send(&self, c: &mut Cluster, message: Message) {
        c.inject(self.node, self.conn, message.encode());
    }

    /// Asks for `doc` (automerge-repo's `request`), starting from an empty document.
    pub(crate) fn request(&mut self, c: &mut Cluster, doc: DocumentId) {
        let (automerge, state) = self.docs.entry(doc).or_default();
        let data = automerge
            .generate_sync_message(state)
            .expect("a first sync message")
            .encode();
        let message = Message::Request {
            sender_id: self.peer_id.clone(),
            target_id: self.server(c),
            document_id: doc,
            data,
        };
        self.send(c, message);
    }

    /// Sends an ephemeral message authored by `sender` (itself, or a peer it relays).
    pub(crate) fn ephemeral(
        &self,
        c: &mut Cluster,
        sender: &PeerId,
        session: &str,
        count: u64,
        doc: DocumentId,
        data: &[u8],
    ) {
        let message = Message::Ephemeral {
            sender_id: sender.clone(),
            target_id: self.server(c),
            count,
            session_id: session.into(),
            document_id: doc,
            data: data.to_vec(),
        };
        self.send(c, message);
    }

    /// Delivers frames between nodes and answers the sync messages addressed to this
    /// client until nothing more happens. Frames for other raw connections stay queued.
    pub(crate) fn pump(&mut self, c: &mut Cluster) {
        loop {
            c.run();
            let (mine, others): (Vec<_>, Vec<_>) = c
                .raw_out
                .drain(..)
                .partition(|(conn, _)| *conn == self.conn);
            c.raw_out.extend(others);
            if mine.is_empty() {
                return;
            }
            for (_, bytes) in mine {
                let message = Message::decode(&bytes, usize::MAX).expect("decodes");
                if let Message::Sync {
                    document_id, data, ..
                } = &message
                {
                    let (doc, state) = self.docs.entry(*document_id).or_default();
                    let incoming = sync::Message::decode(data).expect("sync message");
                    doc.receive_sync_message(state, incoming).expect("applies");
                    if let Some(answer) = doc.generate_sync_message(state) {
                        let reply = Message::Sync {
                            sender_id: self.peer_id.clone(),
                            target_id: self.server(c),
                            document_id: *document_id,
                            data: answer.encode(),
                        };
                        self.send(c, reply);
                    }
                }
                self.inbox.push(message);
            }
        }
    }

    /// The client's copy of `doc` (empty if it has none).
    pub(crate) fn heads(&self, doc: DocumentId) -> Vec<automerge::ChangeHash> {
        self.docs
            .get(&doc)
            .map(|(d, _)| d.get_heads())
            .unwrap_or_default()
    }

    /// The ephemeral messages received, as (sender, session, count, doc, data).
    pub(crate) fn ephemerals(&self) -> Vec<(PeerId, String, u64, DocumentId, Vec<u8>)> {
        self.inbox
            .iter()
            .filter_map(|m| match m {
                Message::Ephemeral {
                    sender_id,
                    session_id,
                    count,
                    document_id,
                    data,
                    ..
                } => Some((
                    sender_id.clone(),
                    session_id.clone(),
                    *count,
                    *document_id,
                    data.clone(),
                )),
                _ => None,
            })
            .collect()
    }
}

/// Pumps several plain clients until none of them receives anything more.
pub(crate) fn pump_all(c: &mut Cluster, clients: &mut [&mut PlainClient]) {
    loop {
        let before: usize = clients.iter().map(|cl| cl.inbox.len()).sum();
        for client in clients.iter_mut() {
            client.pump(c);
        }
        let after: usize = clients.iter().map(|cl| cl.inbox.len()).sum();
        if after == before {
            return;
        }
    }
}
