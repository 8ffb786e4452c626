//! Cloud receipts: a device records, per document, the heads a cloud confirmed; a peerdoc
//! cloud confirms only what it stored durably.

mod support;

use peerdoc_core::persist::{CloudDurability, ReceiptStatus};
use peerdoc_core::repo::{ChangeRequest, Command, Input};
use peerdoc_core::wire::Message;
use peerdoc_core::{DocumentId, PeerId, StorageId};
use peerdoc_sim::Cluster;
use serde_json::json;
use support::{StockServer, join};

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
    c.disconnect(a);
    let (b, _) = c.connect(0, 2);
    c.run();
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

#[test]
fn a_receipt_travels_to_venue_peers_that_never_reach_the_cloud() {
    // Devices 0 and 1 at the venue, 2 the cloud; only device 0 reaches it.
    let mut c = cluster(3, 6, 2);
    let doc = c.create(1, json!({ "v": 0 }), 0);
    c.connect(1, 0);
    c.run();
    assert_eq!(status(&c, 1, doc), ReceiptStatus::Unconfirmed);
    let (up, _) = c.connect(0, 2);
    c.run();
    assert_eq!(status(&c, 0, doc), ReceiptStatus::Confirmed);
    // Device 0 passed the cloud's word on: device 1's work is in the cloud.
    assert_eq!(status(&c, 1, doc), ReceiptStatus::Confirmed);

    // A receipt for a later document reaches device 1 too.
    c.disconnect(up);
    let late = c.create(0, json!({ "late": true }), 0);
    c.run();
    let (up, _) = c.connect(0, 2);
    c.run();
    c.disconnect(up);
    assert_eq!(status(&c, 0, late), ReceiptStatus::Confirmed);
    assert_eq!(status(&c, 1, late), ReceiptStatus::Confirmed);

    // An edit on device 1 is not covered by any receipt until the cloud has it.
    edit(&mut c, 1, doc, 1);
    c.run();
    assert_eq!(status(&c, 1, doc), ReceiptStatus::Unconfirmed);
    assert_eq!(status(&c, 0, doc), ReceiptStatus::Unconfirmed);
}

#[test]
fn receipts_say_what_the_cloud_declared_its_writes_survive_even_when_relayed() {
    // Device 0 reaches the cloud (2), which declares `power`; device 1 hears it from 0.
    let mut c = Cluster::new(3, 12, |config| {
        if config.peer_id.as_str() == "node-2" {
            config.cloud = true;
            config.cloud_durability = Some(CloudDurability::Power);
        }
    });
    let doc = c.create(1, json!({ "v": 0 }), 0);
    c.connect(1, 0);
    c.connect(0, 2);
    c.run();
    for node in [0, 1] {
        let meta = &c.nodes[node].repo.catalog()[&doc];
        assert_eq!(
            meta.receipt_status(),
            ReceiptStatus::Confirmed,
            "node {node}"
        );
        let receipt = meta.current_receipt().expect("receipt");
        assert_eq!(
            receipt.durability,
            Some(CloudDurability::Power),
            "node {node}"
        );
    }
    // And it is kept across a restart.
    c.restart(1);
    let meta = &c.nodes[1].repo.catalog()[&doc];
    assert_eq!(
        meta.current_receipt().and_then(|r| r.durability),
        Some(CloudDurability::Power)
    );

    // A cloud that does not say leaves it unknown.
    let mut c = cluster(2, 13, 1);
    let doc = c.create(0, json!({ "v": 0 }), 0);
    c.connect(0, 1);
    c.run();
    let meta = &c.nodes[0].repo.catalog()[&doc];
    assert_eq!(meta.receipt_status(), ReceiptStatus::Confirmed);
    assert_eq!(meta.current_receipt().and_then(|r| r.durability), None);
}

#[test]
fn a_device_meeting_a_confirmed_peer_later_learns_the_receipt_when_they_sync() {
    let mut c = cluster(3, 7, 2);
    let doc = c.create(0, json!({ "v": 0 }), 0);
    let (up, _) = c.connect(0, 2);
    c.run();
    c.disconnect(up);
    assert_eq!(status(&c, 0, doc), ReceiptStatus::Confirmed);
    // Device 1 first meets device 0 now; it gets the document and the receipt with it.
    c.connect(1, 0);
    c.run();
    assert_eq!(c.json(1, doc), Some(json!({ "v": 0 })));
    assert_eq!(status(&c, 1, doc), ReceiptStatus::Confirmed);
}

#[test]
fn relayed_receipts_are_bounded_and_only_taken_from_peerdoc_peers() {
    let mut c = Cluster::new(1, 8, |_| {});
    let doc = c.create(0, json!({ "v": 0 }), 0);
    let heads: Vec<automerge::ChangeHash> = c.nodes[0].repo.catalog()[&doc].change_heads();
    let relay = |sender: &str, storage: String| {
        Message::RemoteHeadsChanged {
            sender_id: PeerId::new(sender),
            target_id: PeerId::new("node-0"),
            document_id: doc,
            new_heads: [(
                StorageId::new(storage),
                peerdoc_core::wire::RemoteHeads {
                    heads: peerdoc_core::wire::encode_heads(&heads),
                    timestamp: 1,
                    durability: None,
                },
            )]
            .into(),
        }
        .encode()
    };
    // A plain automerge-repo peer's remote-heads-changed is not a receipt.
    let plain = c.connect_raw(0, false);
    c.inject(0, plain, join("plain", false));
    c.inject(0, plain, relay("plain", "cloud-a".into()));
    assert_eq!(status(&c, 0, doc), ReceiptStatus::Unconfirmed);
    // A peerdoc peer's is, but it cannot grow the receipts past a bound.
    let peer = c.connect_raw(0, false);
    c.inject(0, peer, join("peer", true));
    for i in 0..50 {
        c.inject(0, peer, relay("peer", format!("cloud-{i}")));
    }
    assert_eq!(status(&c, 0, doc), ReceiptStatus::Confirmed);
    assert!(c.nodes[0].repo.catalog()[&doc].receipts.len() <= 4);
    // Garbage heads are ignored, not fatal.
    let garbage = Message::RemoteHeadsChanged {
        sender_id: PeerId::new("peer"),
        target_id: PeerId::new("node-0"),
        document_id: doc,
        new_heads: [(
            StorageId::new("cloud-x"),
            peerdoc_core::wire::RemoteHeads {
                heads: vec!["not a hash".into()],
                timestamp: 2,
                durability: None,
            },
        )]
        .into(),
    };
    c.inject(0, peer, garbage.encode());
    assert!(c.disconnects.is_empty(), "{:?}", c.disconnects);
}

#[test]
fn a_stock_sync_server_dialled_as_the_cloud_only_reports() {
    let mut c = Cluster::new(1, 4, |config| config.announce_to_plain_peers = true);
    let doc = c.create(0, json!({ "v": 0 }), 0);
    let conn = c.connect_raw(0, true);
    c.feed(0, Input::CloudEndpoint { conn });
    let mut server = StockServer::new(conn);
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
    let mut server = StockServer::new(conn);
    server.pump(&mut c);
    assert!(server.docs.contains_key(&doc));
    assert_eq!(status(&c, 0, doc), ReceiptStatus::Unconfirmed);
}
