//! How the engine treats peers that do not follow the protocol, and plain automerge-repo
//! peers (no peerdoc extension): raw frames injected on a connection.

use peerdoc_core::repo::{Command, Reply};
use peerdoc_core::wire::{Message, PeerMetadata};
use peerdoc_core::{DocumentId, PeerId, StorageId};
use peerdoc_sim::Cluster;
use serde_json::json;

fn join(sender: &str, peerdoc: bool) -> Vec<u8> {
    Message::Join {
        sender_id: PeerId::new(sender),
        supported_protocol_versions: vec!["1".into()],
        metadata: Some(PeerMetadata {
            storage_id: Some(StorageId::new("js-storage")),
            is_ephemeral: false,
            peerdoc: peerdoc.then_some(peerdoc_core::wire::PeerdocCapabilities {
                version: 1,
                cloud: false,
                durability: None,
            }),
        }),
    }
    .encode()
}

fn sent_kinds(c: &Cluster, conn: peerdoc_core::ConnectionId) -> Vec<String> {
    c.frames
        .iter()
        .filter(|f| f.conn == conn)
        .map(|f| f.kind.clone())
        .collect()
}

fn misbehaved(c: &Cluster, conn: peerdoc_core::ConnectionId) -> Option<String> {
    c.disconnects
        .iter()
        .find(|(_, cn, _, bad)| *cn == conn && *bad)
        .map(|(_, _, reason, _)| reason.clone())
}

#[test]
fn garbage_frames_disconnect_the_peer_and_others_keep_working() {
    let mut c = Cluster::new(2, 20, |_| {});
    let doc = c.create(0, json!({"a": 1}), 0);
    let good = c.connect(1, 0);
    c.run();
    let bad = c.connect_raw(0, false);
    c.inject(0, bad, vec![0xff, 0x00, 0x13, 0x37]);
    assert!(misbehaved(&c, bad).is_some());
    // A late frame on the closed connection is dropped without a fuss.
    c.inject(0, bad, join("x", false));
    // The good peer is unaffected.
    let reply = c.command(
        0,
        Command::Change {
            doc,
            request: peerdoc_core::repo::ChangeRequest::ReplaceWith(json!({"a": 2})),
            message: None,
        },
    );
    assert!(reply.is_ok());
    c.run();
    assert_eq!(c.json(1, doc).unwrap()["a"], 2);
    assert!(
        c.disconnects
            .iter()
            .all(|(_, conn, _, _)| *conn != good.0 && *conn != good.1)
    );
}

#[test]
fn messages_before_the_handshake_are_a_violation() {
    let mut c = Cluster::new(1, 21, |_| {});
    let conn = c.connect_raw(0, false);
    let sync = Message::Sync {
        sender_id: PeerId::new("x"),
        target_id: PeerId::new("node-0"),
        document_id: DocumentId::from_bytes([1; 16]),
        data: vec![],
    };
    c.inject(0, conn, sync.encode());
    assert!(
        misbehaved(&c, conn)
            .unwrap()
            .contains("before the handshake")
    );
}

#[test]
fn oversized_frames_are_a_violation() {
    let mut c = Cluster::new(1, 22, |cfg| cfg.max_message_size = 1024);
    let conn = c.connect_raw(0, false);
    c.inject(0, conn, join("x", false));
    let big = Message::Sync {
        sender_id: PeerId::new("x"),
        target_id: PeerId::new("node-0"),
        document_id: DocumentId::from_bytes([1; 16]),
        data: vec![0; 4096],
    };
    c.inject(0, conn, big.encode());
    assert!(misbehaved(&c, conn).is_some());
}

#[test]
fn a_spoofed_sender_and_a_bad_sync_payload_are_violations() {
    let mut c = Cluster::new(1, 23, |_| {});
    let doc = c.create(0, json!({"a": 1}), 0);
    let conn = c.connect_raw(0, false);
    c.inject(0, conn, join("honest", false));
    let spoofed = Message::Sync {
        sender_id: PeerId::new("someone-else"),
        target_id: PeerId::new("node-0"),
        document_id: doc,
        data: vec![],
    };
    c.inject(0, conn, spoofed.encode());
    assert!(misbehaved(&c, conn).unwrap().contains("sender"));

    let conn = c.connect_raw(0, false);
    c.inject(0, conn, join("honest", false));
    let junk = Message::Sync {
        sender_id: PeerId::new("honest"),
        target_id: PeerId::new("node-0"),
        document_id: doc,
        data: vec![0x42, 1, 2, 3],
    };
    c.inject(0, conn, junk.encode());
    assert!(misbehaved(&c, conn).unwrap().contains("sync"));
    assert_eq!(c.json(0, doc).unwrap(), json!({"a": 1}));
}

#[test]
fn an_unsupported_protocol_version_gets_an_error_not_a_ban() {
    let mut c = Cluster::new(1, 24, |_| {});
    let conn = c.connect_raw(0, false);
    let join = Message::Join {
        sender_id: PeerId::new("future"),
        supported_protocol_versions: vec!["7".into()],
        metadata: None,
    };
    c.inject(0, conn, join.encode());
    assert_eq!(sent_kinds(&c, conn), vec!["error"]);
    assert!(
        c.disconnects
            .iter()
            .any(|(_, cn, _, bad)| *cn == conn && !bad)
    );
}

#[test]
fn a_flood_of_messages_for_unloaded_documents_is_bounded() {
    let mut c = Cluster::new(1, 25, |cfg| {
        cfg.max_docs_in_memory = 1;
        cfg.max_pending_per_peer = 8;
    });
    let docs: Vec<DocumentId> = (0..20).map(|i| c.create(0, json!({"i": i}), 0)).collect();
    let conn = c.connect_raw(0, false);
    c.inject(0, conn, join("flood", false));
    // Storage is slow: requests for cold documents pile up until the bound trips.
    c.hold_storage = true;
    for doc in &docs {
        let request = Message::Request {
            sender_id: PeerId::new("flood"),
            target_id: PeerId::new("node-0"),
            document_id: *doc,
            data: empty_sync_message(),
        };
        c.inject(0, conn, request.encode());
    }
    assert!(misbehaved(&c, conn).unwrap().contains("waiting"));
    c.release_storage();
    // Within the bound, every request is answered once storage catches up.
    let conn = c.connect_raw(0, false);
    c.inject(0, conn, join("patient", false));
    c.hold_storage = true;
    for doc in &docs[..8] {
        let request = Message::Request {
            sender_id: PeerId::new("patient"),
            target_id: PeerId::new("node-0"),
            document_id: *doc,
            data: empty_sync_message(),
        };
        c.inject(0, conn, request.encode());
    }
    c.release_storage();
    assert!(misbehaved(&c, conn).is_none());
    let syncs = sent_kinds(&c, conn).iter().filter(|k| *k == "sync").count();
    assert_eq!(syncs, 8);
}

fn empty_sync_message() -> Vec<u8> {
    use automerge::sync::SyncDoc;
    let doc = automerge::Automerge::new();
    let mut state = automerge::sync::State::new();
    doc.generate_sync_message(&mut state)
        .map(|m| m.encode())
        .unwrap_or_default()
}

#[test]
fn a_plain_automerge_repo_peer_gets_what_it_asks_for_and_nothing_else() {
    let mut c = Cluster::new(1, 26, |_| {});
    let doc = c.create(0, json!({"shots": ["rings"]}), 0);
    let _other = c.create(0, json!({"unrelated": true}), 0);
    let conn = c.connect_raw(0, false);
    c.inject(0, conn, join("js-app", false));
    assert_eq!(
        sent_kinds(&c, conn),
        vec!["peer"],
        "no reconcile, no pushes"
    );
    let request = Message::Request {
        sender_id: PeerId::new("js-app"),
        target_id: PeerId::new("node-0"),
        document_id: doc,
        data: empty_sync_message(),
    };
    c.inject(0, conn, request.encode());
    assert_eq!(sent_kinds(&c, conn), vec!["peer", "sync"]);
    let unknown = Message::Request {
        sender_id: PeerId::new("js-app"),
        target_id: PeerId::new("node-0"),
        document_id: DocumentId::from_bytes([9; 16]),
        data: empty_sync_message(),
    };
    c.inject(0, conn, unknown.encode());
    assert_eq!(sent_kinds(&c, conn).last().unwrap(), "doc-unavailable");
    // A deleted document is unavailable to it.
    assert!(matches!(
        c.command(0, Command::Delete { doc }),
        Ok(Reply::Done)
    ));
    let again = Message::Request {
        sender_id: PeerId::new("js-app"),
        target_id: PeerId::new("node-0"),
        document_id: doc,
        data: empty_sync_message(),
    };
    c.inject(0, conn, again.encode());
    assert_eq!(sent_kinds(&c, conn).last().unwrap(), "doc-unavailable");
}

/// A sync message that claims a document with one change (valid for any document id).
fn claims_a_document() -> Vec<u8> {
    use automerge::sync::SyncDoc;
    use automerge::transaction::Transactable as _;
    let mut doc = automerge::AutoCommit::new();
    doc.put(automerge::ROOT, "x", 1).unwrap();
    let mut state = automerge::sync::State::new();
    doc.sync()
        .generate_sync_message(&mut state)
        .expect("a first message")
        .encode()
}

/// Sends `sync` for `count` random document ids from `sender` on `conn`, stopping once
/// the node disconnects it; returns the ids.
fn sync_random_ids(
    c: &mut Cluster,
    conn: peerdoc_core::ConnectionId,
    sender: &str,
    count: usize,
    seed: u64,
) -> Vec<DocumentId> {
    use rand::{RngCore as _, SeedableRng as _};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let data = claims_a_document();
    let mut ids = Vec::new();
    for _ in 0..count {
        let mut bytes = [0u8; 16];
        rng.fill_bytes(&mut bytes);
        let id = DocumentId::from_bytes(bytes);
        ids.push(id);
        let sync = Message::Sync {
            sender_id: PeerId::new(sender),
            target_id: PeerId::new("node-0"),
            document_id: id,
            data: data.clone(),
        };
        c.inject(0, conn, sync.encode());
        if misbehaved(c, conn).is_some() {
            break;
        }
    }
    ids
}

/// Store keys that name one of `ids`.
fn keys_about(c: &Cluster, ids: &[DocumentId]) -> usize {
    let ids: std::collections::BTreeSet<String> = ids.iter().map(ToString::to_string).collect();
    c.nodes[0]
        .store
        .snapshot()
        .keys()
        .filter(|key| ids.contains(&key.components()[0]))
        .count()
}

#[test]
fn a_peer_that_leaves_takes_the_empty_documents_it_introduced_with_it() {
    for peerdoc in [false, true] {
        let mut c = Cluster::new(1, 26, |_| {});
        c.create(0, json!({"guests": 120}), 0);
        c.run();
        let loaded = c.nodes[0].repo.stats().loaded;
        let conn = c.connect_raw(0, false);
        c.inject(0, conn, join("stranger", peerdoc));
        let ids = sync_random_ids(&mut c, conn, "stranger", 50, 26);
        assert!(misbehaved(&c, conn).is_none());
        assert_eq!(c.nodes[0].repo.stats().loaded, loaded + 50);
        // It leaves (a raw connection has no link for `Cluster::disconnect`).
        c.feed(0, peerdoc_core::repo::Input::ConnectionClosed { conn });
        c.run();
        let stats = c.nodes[0].repo.stats();
        assert_eq!(
            (stats.loaded, stats.parked_sessions, stats.documents),
            (loaded, 0, 1)
        );
        assert_eq!(
            keys_about(&c, &ids),
            0,
            "no sync state kept for what it never sent"
        );
    }
}

#[test]
fn a_peer_syncing_random_document_ids_is_cut_off_and_leaves_nothing_behind() {
    let mut c = Cluster::new(2, 27, |cfg| cfg.max_docs_in_memory = 64);
    let doc = c.create(0, json!({"guests": 120}), 0);
    c.connect(1, 0);
    c.run();
    let conn = c.connect_raw(0, false);
    c.inject(0, conn, join("flood", false));
    let max = peerdoc_core::repo::MAX_INTRODUCED_PER_CONNECTION;
    let ids = sync_random_ids(&mut c, conn, "flood", max + 10, 27);
    let reason = misbehaved(&c, conn).expect("disconnected");
    assert!(reason.contains("unknown documents"), "{reason}");
    assert_eq!(
        ids.len(),
        max + 1,
        "cut off at the first one over the bound"
    );
    c.run();
    // Eviction parked some of them on the way; all of it went with the peer.
    let stats = c.nodes[0].repo.stats();
    assert!(stats.evictions > 0);
    // At most the honest peer's session of the real document, evicted meanwhile.
    assert_eq!(stats.documents, 1);
    assert!(stats.parked_sessions <= 1, "{stats:?}");
    assert!(stats.loaded <= 64, "{stats:?}");
    assert_eq!(keys_about(&c, &ids), 0);
    // The honest peer never noticed.
    let reply = c.command(
        0,
        Command::Change {
            doc,
            request: peerdoc_core::repo::ChangeRequest::ReplaceWith(json!({"guests": 121})),
            message: None,
        },
    );
    assert!(reply.is_ok());
    c.run();
    assert_eq!(c.json(1, doc).unwrap()["guests"], 121);
}
