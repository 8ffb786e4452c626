//! What a plain automerge-repo peer (a JS app) gets from the engine, as it gets it from
//! the stock sync server: a document it asked for before it existed here is delivered
//! when it arrives; ephemeral messages are relayed to the other peers of the document
//! (bounded, de-duplicated, one daemon hop); `remote-subscription-change` is served;
//! a `join` without a version list is v1. Access limits hold through all of it.
//!
//! Fixed seeds; every run replays the same schedule.

mod support;

use peerdoc_core::repo::{
    Command, EPHEMERAL_BURST, Input, MAX_EPHEMERAL_DATA_BYTES, MAX_EPHEMERAL_SOURCES,
    MAX_WANTED_PER_CONNECTION, PeerAccess, Reply,
};
use peerdoc_core::wire::Message;
use peerdoc_core::{DocumentId, PeerId, StorageId};
use peerdoc_sim::Cluster;
use serde_json::json;
use support::{PlainClient, StockServer, pump_all};

const WANTED: DocumentId = DocumentId::from_bytes([3; 16]);

fn create_at(c: &mut Cluster, node: usize, doc: DocumentId, content: serde_json::Value) {
    let created = c.command(
        node,
        Command::CreateAt {
            doc,
            initial: Some(content),
            priority: 0,
            title: None,
        },
    );
    assert!(matches!(created, Ok(Reply::Created { .. })), "{created:?}");
}

fn node_heads(c: &Cluster, node: usize, doc: DocumentId) -> Vec<automerge::ChangeHash> {
    let mut heads = c.nodes[node]
        .repo
        .catalog()
        .get(&doc)
        .map(|m| m.change_heads())
        .unwrap_or_default();
    heads.sort();
    heads
}

fn sorted(mut heads: Vec<automerge::ChangeHash>) -> Vec<automerge::ChangeHash> {
    heads.sort();
    heads
}

fn unavailable(client: &PlainClient, doc: DocumentId) -> bool {
    client
        .inbox
        .iter()
        .any(|m| matches!(m, Message::DocUnavailable { document_id, .. } if *document_id == doc))
}

// ---- late delivery ------------------------------------------------------------------

#[test]
fn a_document_asked_for_before_a_peer_synced_it_is_delivered_when_it_arrives() {
    let mut c = Cluster::new(2, 31, |_| {});
    c.connect(0, 1);
    c.run();
    let mut app = PlainClient::connect(&mut c, 1, "app");
    app.request(&mut c, WANTED);
    app.pump(&mut c);
    assert!(unavailable(&app, WANTED), "{:?}", app.inbox);
    assert_eq!(c.nodes[1].repo.wanted_documents(), 1);

    // Created on the other device, it reaches node 1 over their link, and node 1 offers
    // it to the app that asked, which automerge-repo 2.x would never ask for again.
    create_at(&mut c, 0, WANTED, json!({"table": 4}));
    app.pump(&mut c);
    assert!(!app.heads(WANTED).is_empty(), "never delivered");
    assert_eq!(sorted(app.heads(WANTED)), node_heads(&c, 0, WANTED));
    assert_eq!(c.nodes[1].repo.wanted_documents(), 0);

    // Later edits follow, like on any session.
    c.command(
        0,
        Command::Change {
            doc: WANTED,
            request: peerdoc_core::repo::ChangeRequest::ReplaceWith(json!({"table": 5})),
            message: None,
        },
    )
    .expect("change");
    app.pump(&mut c);
    assert_eq!(sorted(app.heads(WANTED)), node_heads(&c, 0, WANTED));
}

/// Node 0 with a stock sync server it dialed (its cloud) and an app connected to it.
fn app_and_cloud(seed: u64, cloud_has: bool) -> (Cluster, PlainClient, StockServer) {
    let mut c = Cluster::new(1, seed, |_| {});
    let conn = c.connect_raw(0, true);
    let mut server = StockServer::new(conn);
    server.pump(&mut c);
    if cloud_has {
        let mut office = automerge::Automerge::new();
        let mut tx = office.transaction();
        automerge::transaction::Transactable::put(&mut tx, automerge::ROOT, "menu", "fish")
            .expect("put");
        tx.commit();
        server.docs.insert(WANTED, (office, Default::default()));
    }
    let app = PlainClient::connect(&mut c, 0, "app");
    (c, app, server)
}

fn pump_app_and_cloud(c: &mut Cluster, app: &mut PlainClient, server: &mut StockServer) {
    for _ in 0..20 {
        server.pump(c);
        app.pump(c);
    }
}

#[test]
fn an_apps_request_is_passed_to_the_cloud_and_answered_without_unavailable() {
    let (mut c, mut app, mut server) = app_and_cloud(35, true);
    app.request(&mut c, WANTED);
    pump_app_and_cloud(&mut c, &mut app, &mut server);
    // As a stock server asks its peers: the app never hears "unavailable".
    assert!(!unavailable(&app, WANTED), "{:?}", app.inbox);
    let cloud_heads = sorted(server.docs[&WANTED].0.get_heads());
    assert_eq!(sorted(app.heads(WANTED)), cloud_heads);
    assert_eq!(node_heads(&c, 0, WANTED), cloud_heads);
    assert_eq!(c.nodes[0].repo.wanted_documents(), 0);
}

#[test]
fn an_apps_request_nobody_can_answer_is_unavailable_and_still_delivered_later() {
    let (mut c, mut app, mut server) = app_and_cloud(36, false);
    app.request(&mut c, WANTED);
    pump_app_and_cloud(&mut c, &mut app, &mut server);
    assert!(unavailable(&app, WANTED), "{:?}", app.inbox);
    assert!(
        c.nodes[0].repo.document(&WANTED).is_none(),
        "a ghost stayed"
    );
    assert_eq!(c.nodes[0].repo.wanted_documents(), 1);
    create_at(&mut c, 0, WANTED, json!({"table": 4}));
    pump_app_and_cloud(&mut c, &mut app, &mut server);
    assert_eq!(sorted(app.heads(WANTED)), node_heads(&c, 0, WANTED));
    // The request said "I have nothing": the delivery's first message carries the
    // changes rather than asking first (one round trip fewer for every late document).
    let first = app
        .inbox
        .iter()
        .find_map(|m| match m {
            Message::Sync {
                document_id, data, ..
            } if *document_id == WANTED => Some(data.clone()),
            _ => None,
        })
        .expect("a sync message");
    let first = automerge::sync::Message::decode(&first).expect("decodes");
    assert!(
        !first.changes.is_empty(),
        "the first delivery message carries no change"
    );
}

#[test]
fn a_document_created_on_the_same_node_after_the_request_is_delivered() {
    let mut c = Cluster::new(1, 32, |_| {});
    let mut asker = PlainClient::connect(&mut c, 0, "asker");
    asker.request(&mut c, WANTED);
    asker.pump(&mut c);
    assert!(unavailable(&asker, WANTED));
    // Another app on the same node creates it (its sync introduces the document).
    let mut author = PlainClient::connect(&mut c, 0, "author");
    let mut doc = automerge::Automerge::new();
    let mut tx = doc.transaction();
    automerge::transaction::Transactable::put(&mut tx, automerge::ROOT, "menu", "fish")
        .expect("put");
    tx.commit();
    author.docs.insert(WANTED, (doc, Default::default()));
    let first = {
        let (doc, state) = author.docs.get_mut(&WANTED).expect("doc");
        automerge::sync::SyncDoc::generate_sync_message(doc, state).expect("message")
    };
    let sync = Message::Sync {
        sender_id: author.peer_id.clone(),
        target_id: author.server(&c),
        document_id: WANTED,
        data: first.encode(),
    };
    author.send(&mut c, sync);
    pump_all(&mut c, &mut [&mut author, &mut asker]);
    assert_eq!(c.json(0, WANTED), Some(json!({"menu": "fish"})));
    assert_eq!(asker.heads(WANTED), author.heads(WANTED));
}

#[test]
fn a_closed_connection_forgets_what_it_asked_for() {
    let mut c = Cluster::new(1, 33, |_| {});
    let mut app = PlainClient::connect(&mut c, 0, "app");
    app.request(&mut c, WANTED);
    app.pump(&mut c);
    assert_eq!(c.nodes[0].repo.wanted_documents(), 1);
    c.feed(0, Input::ConnectionClosed { conn: app.conn });
    assert_eq!(c.nodes[0].repo.wanted_documents(), 0);
    // Creating it now sends nothing to the closed connection.
    create_at(&mut c, 0, WANTED, json!({"x": 1}));
    assert!(c.raw_out.iter().all(|(conn, _)| *conn != app.conn));
}

#[test]
fn a_deleted_document_is_forgotten_and_never_delivered() {
    let mut c = Cluster::new(2, 34, |_| {});
    let mut app = PlainClient::connect(&mut c, 1, "app");
    app.request(&mut c, WANTED);
    app.pump(&mut c);
    // Made and deleted on another device before the two meet: node 1 learns of the
    // tombstone only, and the request is dropped.
    create_at(&mut c, 0, WANTED, json!({"draft": true}));
    c.command(0, Command::Delete { doc: WANTED })
        .expect("delete");
    c.connect(0, 1);
    c.run();
    assert!(c.nodes[1].repo.catalog()[&WANTED].deleted);
    assert_eq!(c.nodes[1].repo.wanted_documents(), 0);
    app.pump(&mut c);
    assert!(app.heads(WANTED).is_empty());
}

#[test]
fn what_one_connection_waits_for_is_bounded() {
    let mut c = Cluster::new(1, 35, |_| {});
    let mut app = PlainClient::connect(&mut c, 0, "app");
    let id = |i: usize| {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&(i as u64).to_be_bytes());
        bytes[15] = 1;
        DocumentId::from_bytes(bytes)
    };
    for i in 0..MAX_WANTED_PER_CONNECTION + 10 {
        app.request(&mut c, id(i));
    }
    c.raw_out.clear();
    assert_eq!(
        c.nodes[0].repo.wanted_documents(),
        MAX_WANTED_PER_CONNECTION
    );
    // The oldest requests went; the newest is delivered.
    let newest = id(MAX_WANTED_PER_CONNECTION + 9);
    create_at(&mut c, 0, newest, json!({"n": 1}));
    create_at(&mut c, 0, id(0), json!({"n": 0}));
    app.inbox.clear();
    app.pump(&mut c);
    assert!(
        !app.heads(newest).is_empty(),
        "{:?} {:?}",
        app.inbox,
        c.disconnects
    );
    assert!(app.heads(id(0)).is_empty());
}

#[test]
fn a_protected_only_connection_is_never_delivered_an_unprotected_document() {
    let mut c = Cluster::new(1, 36, |_| {});
    let mut app = PlainClient::connect(&mut c, 0, "app");
    app.request(&mut c, WANTED);
    app.pump(&mut c);
    assert!(unavailable(&app, WANTED));
    // Its access narrows before the document arrives.
    c.feed(
        0,
        Input::ConnectionAccess {
            conn: app.conn,
            access: PeerAccess::ProtectedOnly,
        },
    );
    create_at(&mut c, 0, WANTED, json!({"secret": true}));
    app.pump(&mut c);
    assert!(app.heads(WANTED).is_empty());
    assert!(
        app.inbox.iter().all(
            |m| m.document_id() != Some(&WANTED) || matches!(m, Message::DocUnavailable { .. })
        ),
        "{:?}",
        app.inbox
    );
}

// ---- ephemeral relay ---------------------------------------------------------------

/// Node 0 holds `WANTED`; `a` and `b` have it open; `outsider` does not.
fn three_apps(seed: u64) -> (Cluster, PlainClient, PlainClient, PlainClient) {
    let mut c = Cluster::new(1, seed, |_| {});
    create_at(&mut c, 0, WANTED, json!({"seats": 80}));
    let mut a = PlainClient::connect(&mut c, 0, "a");
    let mut b = PlainClient::connect(&mut c, 0, "b");
    let outsider = PlainClient::connect(&mut c, 0, "outsider");
    a.request(&mut c, WANTED);
    b.request(&mut c, WANTED);
    pump_all(&mut c, &mut [&mut a, &mut b]);
    assert!(!a.heads(WANTED).is_empty() && !b.heads(WANTED).is_empty());
    (c, a, b, outsider)
}

#[test]
fn ephemeral_messages_reach_the_other_peers_of_the_document_once() {
    let (mut c, mut a, mut b, mut outsider) = three_apps(41);
    let author = a.peer_id.clone();
    a.ephemeral(&mut c, &author, "s1", 1, WANTED, b"cursor");
    pump_all(&mut c, &mut [&mut a, &mut b, &mut outsider]);
    assert_eq!(
        b.ephemerals(),
        vec![(
            author.clone(),
            "s1".to_owned(),
            1,
            WANTED,
            b"cursor".to_vec()
        )]
    );
    // Not back to its author, not to a peer without the document.
    assert!(a.ephemerals().is_empty());
    assert!(outsider.ephemerals().is_empty());
    // The application hears it too.
    assert!(c.events.iter().any(|(_, e)| matches!(
        e,
        peerdoc_core::repo::Event::Ephemeral { from, .. } if *from == author
    )));

    // b echoes it back, as a stock JS client does: dropped, not relayed again.
    b.ephemeral(&mut c, &author, "s1", 1, WANTED, b"cursor");
    // And a replayed older count is dropped too.
    a.ephemeral(&mut c, &author, "s1", 1, WANTED, b"cursor");
    pump_all(&mut c, &mut [&mut a, &mut b, &mut outsider]);
    assert_eq!(b.ephemerals().len(), 1);
    assert!(a.ephemerals().is_empty());
    // The next count goes through.
    a.ephemeral(&mut c, &author, "s1", 2, WANTED, b"moved");
    pump_all(&mut c, &mut [&mut a, &mut b, &mut outsider]);
    assert_eq!(b.ephemerals().len(), 2);
}

#[test]
fn ephemeral_messages_cross_one_daemon_link_and_no_more() {
    // 0 - 1 - 2 in a line; an app on each end, one in the middle.
    let mut c = Cluster::new(3, 42, |_| {});
    c.connect(0, 1);
    c.connect(1, 2);
    create_at(&mut c, 0, WANTED, json!({"seats": 80}));
    c.run();
    let mut apps: Vec<PlainClient> = (0..3)
        .map(|node| PlainClient::connect(&mut c, node, &format!("app-{node}")))
        .collect();
    for app in apps.iter_mut() {
        app.request(&mut c, WANTED);
    }
    {
        let [a0, a1, a2] = &mut apps[..] else {
            unreachable!()
        };
        pump_all(&mut c, &mut [a0, a1, a2]);
        let author = a0.peer_id.clone();
        a0.ephemeral(&mut c, &author, "s", 1, WANTED, b"here");
        pump_all(&mut c, &mut [a0, a1, a2]);
        assert_eq!(a1.ephemerals().len(), 1, "one hop away");
        assert!(a2.ephemerals().is_empty(), "two daemon hops away");
        assert_eq!(
            c.frames
                .iter()
                .filter(|f| f.kind == "ephemeral" && f.from == 1 && f.conn != a1.conn)
                .count(),
            0,
            "node 1 relays a daemon's message to its apps only"
        );
        // A daemon's own broadcast reaches its peers' apps the same way.
        c.command(
            2,
            Command::Broadcast {
                doc: WANTED,
                data: b"from 2".to_vec(),
            },
        )
        .expect("broadcast");
        pump_all(&mut c, &mut [a0, a1, a2]);
        assert_eq!(a2.ephemerals().len(), 1);
        assert_eq!(a1.ephemerals().len(), 2);
        assert!(a0.ephemerals().is_empty());
    }
}

#[test]
fn ephemeral_messages_are_bounded_in_size_and_rate() {
    let (mut c, mut a, mut b, _) = three_apps(43);
    let author = a.peer_id.clone();
    let big = vec![0u8; MAX_EPHEMERAL_DATA_BYTES + 1];
    a.ephemeral(&mut c, &author, "s", 1, WANTED, &big);
    pump_all(&mut c, &mut [&mut a, &mut b]);
    assert!(b.ephemerals().is_empty(), "oversized data relayed");
    // A burst at one instant: the budget lets EPHEMERAL_BURST through, no more, and
    // costs the sender nothing else (no disconnect).
    for count in 2..EPHEMERAL_BURST + 50 {
        a.ephemeral(&mut c, &author, "s", count, WANTED, b"x");
    }
    pump_all(&mut c, &mut [&mut a, &mut b]);
    assert_eq!(b.ephemerals().len() as u64, EPHEMERAL_BURST);
    assert!(c.disconnects.is_empty());
    // Time refills it.
    c.advance(1_000);
    a.ephemeral(
        &mut c,
        &author,
        "s",
        EPHEMERAL_BURST + 100,
        WANTED,
        b"later",
    );
    pump_all(&mut c, &mut [&mut a, &mut b]);
    assert_eq!(b.ephemerals().len() as u64, EPHEMERAL_BURST + 1);
}

#[test]
fn the_duplicate_filter_remembers_a_bounded_number_of_sessions() {
    let (mut c, mut a, mut b, _) = three_apps(44);
    for session in 0..MAX_EPHEMERAL_SOURCES + 20 {
        let author = PeerId::new(format!("author-{session}"));
        a.ephemeral(&mut c, &author, "s", 1, WANTED, b"x");
        if session % 300 == 0 {
            c.advance(10_000);
        }
    }
    pump_all(&mut c, &mut [&mut a, &mut b]);
    assert_eq!(c.nodes[0].repo.ephemeral_sources(), MAX_EPHEMERAL_SOURCES);
}

#[test]
fn a_read_only_peer_hears_presence_but_is_not_heard() {
    let (mut c, mut a, mut b, _) = three_apps(45);
    c.feed(
        0,
        Input::ConnectionAccess {
            conn: a.conn,
            access: PeerAccess::ReadOnly,
        },
    );
    let author = a.peer_id.clone();
    a.ephemeral(&mut c, &author, "s", 1, WANTED, b"viewer");
    pump_all(&mut c, &mut [&mut a, &mut b]);
    assert!(b.ephemerals().is_empty());
    let from_b = b.peer_id.clone();
    b.ephemeral(&mut c, &from_b, "t", 1, WANTED, b"editor");
    pump_all(&mut c, &mut [&mut a, &mut b]);
    assert_eq!(a.ephemerals().len(), 1);
}

#[test]
fn a_protected_only_peer_neither_hears_nor_is_heard_about_other_documents() {
    let (mut c, mut a, mut b, _) = three_apps(46);
    c.feed(
        0,
        Input::ConnectionAccess {
            conn: a.conn,
            access: PeerAccess::ProtectedOnly,
        },
    );
    let author = a.peer_id.clone();
    a.ephemeral(&mut c, &author, "s", 1, WANTED, b"x");
    let from_b = b.peer_id.clone();
    b.ephemeral(&mut c, &from_b, "t", 1, WANTED, b"y");
    pump_all(&mut c, &mut [&mut a, &mut b]);
    assert!(a.ephemerals().is_empty());
    assert!(b.ephemerals().is_empty());
}

// ---- handshake ----------------------------------------------------------------------

#[test]
fn a_join_without_protocol_versions_is_taken_as_version_one() {
    let mut c = Cluster::new(1, 51, |_| {});
    let conn = c.connect_raw(0, false);
    let join = Message::Join {
        sender_id: PeerId::new("old-client"),
        supported_protocol_versions: Vec::new(),
        metadata: None,
    };
    c.inject(0, conn, join.encode());
    let (_, bytes) = c.raw_out.pop_front().expect("an answer");
    match Message::decode(&bytes, usize::MAX).expect("decodes") {
        Message::Peer {
            selected_protocol_version,
            ..
        } => assert_eq!(selected_protocol_version, "1"),
        other => panic!("expected peer, got {other:?}"),
    }
    assert!(c.disconnects.is_empty());
    // A list without "1" is still refused.
    let conn = c.connect_raw(0, false);
    let join = Message::Join {
        sender_id: PeerId::new("future-client"),
        supported_protocol_versions: vec!["7".into()],
        metadata: None,
    };
    c.inject(0, conn, join.encode());
    assert!(c.disconnects.iter().any(|(_, d, _, _)| *d == conn));
}

// ---- remote heads subscriptions -----------------------------------------------------

#[test]
fn a_subscribed_app_hears_the_heads_another_storage_reports() {
    let mut c = Cluster::new(2, 61, |_| {});
    c.connect(0, 1);
    create_at(&mut c, 0, WANTED, json!({"seats": 80}));
    c.run();
    let mut app = PlainClient::connect(&mut c, 0, "app");
    app.request(&mut c, WANTED);
    app.pump(&mut c);
    let device = c.nodes[1].repo.storage_id().cloned().expect("storage id");
    let subscribe = Message::RemoteSubscriptionChange {
        sender_id: app.peer_id.clone(),
        target_id: app.server(&c),
        add: vec![device.clone()],
        remove: Vec::new(),
    };
    app.send(&mut c, subscribe);
    app.pump(&mut c);
    let reported = |app: &PlainClient, storage: &StorageId| -> Vec<Vec<String>> {
        app.inbox
            .iter()
            .filter_map(|m| match m {
                Message::RemoteHeadsChanged {
                    document_id,
                    new_heads,
                    ..
                } if *document_id == WANTED => new_heads.get(storage).map(|h| h.heads.clone()),
                _ => None,
            })
            .collect()
    };
    // What node 0 knows now: node 1 holds the document at its current heads.
    let now = peerdoc_core::wire::encode_heads(&node_heads(&c, 0, WANTED));
    assert_eq!(reported(&app, &device).last(), Some(&now));
    // An edit on node 0 reaches node 1; the app hears node 1's new heads.
    c.command(
        0,
        Command::Change {
            doc: WANTED,
            request: peerdoc_core::repo::ChangeRequest::ReplaceWith(json!({"seats": 90})),
            message: None,
        },
    )
    .expect("change");
    app.pump(&mut c);
    let now = peerdoc_core::wire::encode_heads(&node_heads(&c, 0, WANTED));
    assert_eq!(reported(&app, &device).last(), Some(&now));
    // Unsubscribed, it hears nothing more.
    let unsubscribe = Message::RemoteSubscriptionChange {
        sender_id: app.peer_id.clone(),
        target_id: app.server(&c),
        add: Vec::new(),
        remove: vec![device.clone()],
    };
    app.send(&mut c, unsubscribe);
    app.pump(&mut c);
    let before = reported(&app, &device).len();
    c.command(
        0,
        Command::Change {
            doc: WANTED,
            request: peerdoc_core::repo::ChangeRequest::ReplaceWith(json!({"seats": 95})),
            message: None,
        },
    )
    .expect("change");
    app.pump(&mut c);
    assert_eq!(reported(&app, &device).len(), before);
}

#[test]
fn a_subscribed_app_hears_what_its_stock_server_cloud_holds() {
    let mut c = Cluster::new(1, 62, |config| config.announce_to_plain_peers = true);
    let cloud = c.connect_raw(0, true);
    c.feed(0, Input::CloudEndpoint { conn: cloud });
    let mut server = StockServer::new(cloud);
    server.pump(&mut c);
    let mut app = PlainClient::connect(&mut c, 0, "app");
    let storage = StorageId::new("stock-server-storage");
    let subscribe = Message::RemoteSubscriptionChange {
        sender_id: app.peer_id.clone(),
        target_id: app.server(&c),
        add: vec![storage.clone()],
        remove: Vec::new(),
    };
    app.send(&mut c, subscribe);
    // The app makes a document; the node pushes it to the cloud, which confirms it.
    let mut doc = automerge::Automerge::new();
    let mut tx = doc.transaction();
    automerge::transaction::Transactable::put(&mut tx, automerge::ROOT, "menu", "fish")
        .expect("put");
    tx.commit();
    app.docs.insert(WANTED, (doc, Default::default()));
    let first = {
        let (doc, state) = app.docs.get_mut(&WANTED).expect("doc");
        automerge::sync::SyncDoc::generate_sync_message(doc, state).expect("message")
    };
    let sync = Message::Sync {
        sender_id: app.peer_id.clone(),
        target_id: app.server(&c),
        document_id: WANTED,
        data: first.encode(),
    };
    app.send(&mut c, sync);
    for _ in 0..5 {
        server.pump(&mut c);
        app.pump(&mut c);
    }
    let want = peerdoc_core::wire::encode_heads(&app.heads(WANTED));
    let heard: Vec<Vec<String>> = app
        .inbox
        .iter()
        .filter_map(|m| match m {
            Message::RemoteHeadsChanged { new_heads, .. } => {
                new_heads.get(&storage).map(|h| h.heads.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(heard.last(), Some(&want), "{:?}", app.inbox);
}
