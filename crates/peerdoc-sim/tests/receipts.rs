//! Cloud receipts: a device records, per document, the heads a cloud confirmed; a peerdoc
//! cloud confirms only what it stored durably.

use automerge::sync::SyncDoc;
use automerge::{Automerge, sync};
use peerdoc_core::persist::ReceiptStatus;
use peerdoc_core::repo::{ChangeRequest, Command, Input};
use peerdoc_core::wire::{Message, PeerMetadata};
use peerdoc_core::{ConnectionId, DocumentId, PeerId, StorageId};
use peerdoc_sim::Cluster;
use serde_json::json;

/// Node `cloud` offers itself as the team's cloud.
fn cluster(n: usize, seed: u64, cloud: usize) -> Cluster {
    let name = format!("node-{cloud}");
    Cluster::new(n, seed, move |config| {
        config.cloud = config.peer_id.as_str() == name;
    })
}

fn status(c: &Cluster, node: usize, doc: DocumentId) -> ReceiptStatus {
    c.nodes[node].repo.catalog()[&doc].receipt_status()
}

fn edit(c: &mut Cluster, node: usize, doc: DocumentId, value: i64) {
    c.command(
        node,
        Command::Change {
            doc,
            request: ChangeRequest::ReplaceWith(json!({ "v": value })),
            message: None,
        },
    )
    .expect("change");
}

#[test]
fn a_cloud_confirms_what_it_holds_and_the_receipt_survives_a_restart() {
    let mut c = cluster(2, 1, 1);
    let doc = c.create(0, json!({ "v": 0 }), 0);
    assert_eq!(status(&c, 0, doc), ReceiptStatus::Unconfirmed);

    let (conn, _) = c.connect(0, 1);
    c.run();
    assert_eq!(status(&c, 0, doc), ReceiptStatus::Confirmed);
    // The cloud keeps no receipts about the device: the device is not a cloud.
    assert!(c.nodes[1].repo.catalog()[&doc].receipts.is_empty());

    // A local edit is something the cloud lacks until it confirms it.
    c.disconnect(conn);
    edit(&mut c, 0, doc, 1);
    assert_eq!(status(&c, 0, doc), ReceiptStatus::Unconfirmed);
    c.connect(0, 1);
    c.run();
    assert_eq!(status(&c, 0, doc), ReceiptStatus::Confirmed);

    // Receipts are in the stored metadata: an offline device still knows.
    c.restart(0);
    assert_eq!(status(&c, 0, doc), ReceiptStatus::Confirmed);
    edit(&mut c, 0, doc, 2);
    assert_eq!(status(&c, 0, doc), ReceiptStatus::Unconfirmed);
}

#[test]
fn a_cloud_does_not_confirm_heads_before_its_write_completes() {
    let mut c = cluster(2, 2, 1);
    let doc = c.create(0, json!({ "v": 0 }), 0);
    c.hold_storage = true;
    c.connect(0, 1);
    c.run();
    // The cloud has applied the change in memory, but its write is still pending: its
    // sync reply, which would reveal the new heads, is held back.
    assert_eq!(status(&c, 0, doc), ReceiptStatus::Unconfirmed);
    c.release_storage();
    c.run();
    assert_eq!(status(&c, 0, doc), ReceiptStatus::Confirmed);
    assert_eq!(c.json(1, doc), Some(json!({ "v": 0 })));
}

#[test]
fn a_document_that_reached_the_cloud_through_another_device_gets_its_receipt() {
    let mut c = cluster(3, 3, 2);
    let doc = c.create(0, json!({ "v": 0 }), 0);
    let (a, _) = c.connect(1, 0);
    c.run();
    assert_eq!(c.json(1, doc), Some(json!({ "v": 0 })));
    let (b, _) = c.connect(0, 2);
    c.run();
    c.disconnect(a);
    c.disconnect(b);
    assert_eq!(status(&c, 0, doc), ReceiptStatus::Confirmed);
    assert_eq!(status(&c, 1, doc), ReceiptStatus::Unconfirmed);

    // Reconciliation finds nothing different between device 1 and the cloud; the
    // device still asks, once, to get the cloud's word for it.
    c.connect(1, 2);
    c.run();
    assert_eq!(status(&c, 1, doc), ReceiptStatus::Confirmed);
    // A peer that is not a cloud never issues receipts.
    assert!(
        c.nodes[1].repo.catalog()[&doc]
            .receipts
            .keys()
            .all(|s| *s == c.nodes[2].repo.storage_id().unwrap().to_string())
    );
}

/// Plays a stock automerge-repo sync server on a raw connection: answers `join`, then
/// syncs every document node 0 sends with a real automerge document per document.
struct StockServer {
    conn: ConnectionId,
    docs: std::collections::BTreeMap<DocumentId, (Automerge, sync::State)>,
}

impl StockServer {
    fn pump(&mut self, c: &mut Cluster) {
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

#[test]
fn a_stock_sync_server_dialled_as_the_cloud_only_reports() {
    let mut c = Cluster::new(1, 4, |config| config.announce_to_plain_peers = true);
    let doc = c.create(0, json!({ "v": 0 }), 0);
    let conn = c.connect_raw(0, true);
    c.feed(0, Input::CloudEndpoint { conn });
    let mut server = StockServer {
        conn,
        docs: Default::default(),
    };
    server.pump(&mut c);
    assert!(server.docs.contains_key(&doc), "the document was pushed");
    // It holds everything, but a stock server reports heads before it writes them.
    assert_eq!(status(&c, 0, doc), ReceiptStatus::Reported);
    let receipts = &c.nodes[0].repo.catalog()[&doc].receipts;
    assert!(!receipts["stock-server-storage"].durable);
}

#[test]
fn a_plain_peer_that_was_not_dialled_as_the_cloud_issues_no_receipt() {
    let mut c = Cluster::new(1, 5, |config| config.announce_to_plain_peers = true);
    let doc = c.create(0, json!({ "v": 0 }), 0);
    let conn = c.connect_raw(0, true);
    let mut server = StockServer {
        conn,
        docs: Default::default(),
    };
    server.pump(&mut c);
    assert!(server.docs.contains_key(&doc));
    assert_eq!(status(&c, 0, doc), ReceiptStatus::Unconfirmed);
}
