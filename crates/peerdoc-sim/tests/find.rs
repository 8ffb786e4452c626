//! `Command::Find`: asking connected peers for a document this node does not have
//! (a stock sync server never says what it holds; a document made at the office is
//! reached by its id).

mod support;

use automerge::sync::SyncDoc as _;
use automerge::transaction::Transactable;
use automerge::{Automerge, ROOT};
use peerdoc_core::DocumentId;
use peerdoc_core::PeerId;
use peerdoc_core::repo::{Command, Reply, RepoError};
use peerdoc_core::wire::Message;
use peerdoc_sim::Cluster;
use serde_json::json;
use support::StockServer;

/// Node 0 connected to a stock server holding one document, made outside peerdoc.
fn with_server(seed: u64) -> (Cluster, StockServer, DocumentId) {
    let mut c = Cluster::new(1, seed, |_| {});
    let conn = c.connect_raw(0, true);
    let mut server = StockServer::new(conn);
    server.pump(&mut c);
    let doc = DocumentId::from_bytes([9; 16]);
    let mut office = Automerge::new();
    let mut tx = office.transaction();
    tx.put(ROOT, "menu", "fish").expect("put");
    tx.commit();
    server.docs.insert(doc, (office, Default::default()));
    (c, server, doc)
}

#[test]
fn a_document_only_a_peer_has_is_fetched_by_its_id() {
    let (mut c, mut server, doc) = with_server(1);
    assert!(matches!(
        c.command(0, Command::Open { doc }),
        Err(RepoError::DocumentNotFound(_))
    ));
    let id = c.submit(0, Command::Find { doc });
    server.pump(&mut c);
    match c.take_reply(id) {
        Some(Ok(Reply::Opened { doc: found, heads })) => {
            assert_eq!(found, doc);
            assert!(!heads.is_empty());
        }
        other => panic!("find: {other:?}"),
    }
    assert_eq!(c.json(0, doc), Some(json!({ "menu": "fish" })));
    // It is in the catalog now, stored: it survives a restart.
    c.restart(0);
    assert_eq!(c.json(0, doc), Some(json!({ "menu": "fish" })));
    // Finding a document already held answers at once.
    assert!(matches!(
        c.command(0, Command::Find { doc }),
        Ok(Reply::Opened { .. })
    ));
}

#[test]
fn a_document_no_peer_has_is_not_found_and_leaves_nothing_behind() {
    let (mut c, mut server, _) = with_server(2);
    let missing = DocumentId::from_bytes([7; 16]);
    let first = c.submit(0, Command::Find { doc: missing });
    let second = c.submit(0, Command::Find { doc: missing });
    server.pump(&mut c);
    for id in [first, second] {
        assert!(
            matches!(c.take_reply(id), Some(Err(RepoError::DocumentNotFound(d))) if d == missing)
        );
    }
    assert!(c.nodes[0].repo.document(&missing).is_none());
    assert!(!c.nodes[0].repo.catalog().contains_key(&missing));
}

#[test]
fn a_late_empty_sync_message_after_not_found_loads_nothing() {
    // A stock sync server answers a request for a document it lacks with
    // `doc-unavailable` and then with a sync message of its own empty document. Each
    // failed fetch once left one more empty document in memory.
    let (mut c, mut server, _) = with_server(6);
    let loaded_before = c.nodes[0].repo.stats().loaded;
    for n in 0..3u8 {
        let missing = DocumentId::from_bytes([40 + n; 16]);
        let id = c.submit(0, Command::Find { doc: missing });
        server.pump(&mut c);
        assert!(matches!(
            c.take_reply(id),
            Some(Err(RepoError::DocumentNotFound(_)))
        ));
        let mut state = automerge::sync::State::new();
        let empty = Automerge::new()
            .generate_sync_message(&mut state)
            .expect("a first message");
        let late = Message::Sync {
            sender_id: PeerId::new("stock-server"),
            target_id: PeerId::new("node-0"),
            document_id: missing,
            data: empty.encode(),
        };
        c.inject(0, server.conn, late.encode());
        c.run();
        assert!(
            c.nodes[0].repo.document(&missing).is_none(),
            "doc {n} loaded"
        );
    }
    assert_eq!(c.nodes[0].repo.stats().loaded, loaded_before);
}

#[test]
fn with_no_peer_connected_find_answers_at_once() {
    let mut c = Cluster::new(1, 3, |_| {});
    let doc = DocumentId::from_bytes([5; 16]);
    assert!(matches!(
        c.command(0, Command::Find { doc }),
        Err(RepoError::DocumentNotFound(_))
    ));
}

#[test]
fn a_peer_that_never_answers_costs_the_deadline_not_a_hang() {
    let (mut c, _server, doc) = with_server(4);
    let id = c.submit(0, Command::Find { doc });
    // The server never answers; the engine's clock passes the deadline.
    c.advance(5_000);
    c.tick();
    assert!(c.take_reply(id).is_none(), "not before the deadline");
    c.advance(5_001);
    c.tick();
    assert!(matches!(
        c.take_reply(id),
        Some(Err(RepoError::DocumentNotFound(_)))
    ));
}

#[test]
fn a_closed_connection_counts_as_not_having_it() {
    let (mut c, server, doc) = with_server(5);
    let id = c.submit(0, Command::Find { doc });
    c.feed(
        0,
        peerdoc_core::repo::Input::ConnectionClosed { conn: server.conn },
    );
    assert!(matches!(
        c.take_reply(id),
        Some(Err(RepoError::DocumentNotFound(_)))
    ));
}
