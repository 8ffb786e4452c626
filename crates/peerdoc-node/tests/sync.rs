//! Two nodes in one process on 127.0.0.1, mDNS off, connected by an explicit dial.
//!
//! Every wait re-checks the state after each event and has a generous timeout that
//! only guards against a hang; the assertions are about what happened, never how fast.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use peerdoc_core::DocumentId;
use peerdoc_node::{
    EditOp, Multiaddr, Node, NodeConfig, NodeError, NodeEvent, NodeHandle, Origin, PeerId,
};
use rand::SeedableRng;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::broadcast::{Receiver, error::RecvError};

/// Failure guard for any single wait.
const GUARD: Duration = Duration::from_secs(60);

async fn start(dir: &Path) -> Node {
    let config = NodeConfig::loopback(dir);
    assert!(
        !config.net.enable_mdns,
        "tests never run mDNS in the host namespace"
    );
    guard("node start", Node::start(config))
        .await
        .unwrap_or_else(|e| panic!("start: {e}"))
}

async fn guard<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(GUARD, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

async fn listen_addr(node: &NodeHandle) -> Multiaddr {
    let addrs = node.status().await.unwrap().listen_addrs;
    assert!(!addrs.is_empty(), "node listens somewhere");
    for addr in &addrs {
        assert!(
            addr.to_string().starts_with("/ip4/127.0.0.1/"),
            "loopback only: {addr}"
        );
    }
    addrs[0].clone()
}

/// Polls `check` after every event on `events` until it returns `Some`.
async fn until<T, F, Fut>(what: &str, events: &mut Receiver<NodeEvent>, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    guard(what, async {
        loop {
            if let Some(v) = check().await {
                return v;
            }
            match events.recv().await {
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => panic!("node stopped while waiting for {what}"),
            }
        }
    })
    .await
}

/// Polls `check` every 20 ms until it returns `Some`: for state that changes without
/// an event (what the engine knows a peer has).
async fn poll<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    guard(what, async {
        loop {
            if let Some(v) = check().await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// Dials `to` from `from` and waits until both finished the sync handshake.
async fn connect(from: &NodeHandle, to: &NodeHandle) {
    let mut from_events = from.subscribe();
    let mut to_events = to.subscribe();
    assert_eq!(
        from.dial(listen_addr(to).await).await.unwrap(),
        to.peer_id()
    );
    let (from_id, to_id) = (from.peer_id(), to.peer_id());
    wait_connected(&mut from_events, to_id).await;
    wait_connected(&mut to_events, from_id).await;
}

async fn wait_connected(events: &mut Receiver<NodeEvent>, peer: PeerId) {
    guard("PeerConnected", async {
        loop {
            match events.recv().await {
                Ok(NodeEvent::PeerConnected { peer: p, .. }) if p == peer => return,
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => panic!("node stopped"),
            }
        }
    })
    .await;
}

/// Waits until `doc` on `node` reads as something `check` accepts.
async fn until_doc(
    what: &str,
    node: &NodeHandle,
    events: &mut Receiver<NodeEvent>,
    doc: DocumentId,
    check: impl Fn(&Value) -> bool,
) -> Value {
    until(what, events, || async {
        match node.read(doc).await {
            Ok(json) if check(&json) => Some(json),
            Ok(_) | Err(NodeError::DocumentNotFound(_)) => None,
            Err(e) => panic!("read: {e}"),
        }
    })
    .await
}

/// Two fresh data directories: the first for the node with the lower peer id (the
/// side that opens the sync stream, "leader" in peerdoc-net), the second for the other.
fn leader_and_follower_dirs() -> (TempDir, TempDir) {
    let (x, y) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let id = |dir: &Path| {
        peerdoc_net::load_or_create_identity(&dir.join("identity.key"))
            .unwrap()
            .public()
            .to_peer_id()
    };
    if id(x.path()) < id(y.path()) {
        (x, y)
    } else {
        (y, x)
    }
}

fn set(path: &str, value: Value) -> Vec<EditOp> {
    vec![EditOp::Set {
        path: path.into(),
        value,
    }]
}

#[tokio::test]
async fn created_on_a_is_readable_on_b_and_a_change_on_b_reaches_a() {
    let (dir_a, dir_b) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let a = start(dir_a.path()).await;
    let b = start(dir_b.path()).await;
    let mut a_events = a.subscribe();
    let mut b_events = b.subscribe();
    connect(&b, &a).await;

    let doc = a
        .create(
            json!({"firstDance": "21:00"}),
            10,
            Some("Run of show".into()),
        )
        .await
        .unwrap();
    let on_b = until_doc("the doc on B", &b, &mut b_events, doc, |_| true).await;
    assert_eq!(on_b, json!({"firstDance": "21:00"}));

    // A second receiver keeps every event for the assertions below (the first one is
    // consumed by the wait).
    let mut a_log = a.subscribe();
    b.edit(
        doc,
        set("/firstDance", json!("21:15")),
        Some("moved".into()),
    )
    .await
    .unwrap();
    until_doc("B's change on A", &a, &mut a_events, doc, |j| {
        j["firstDance"] == "21:15"
    })
    .await;

    // A was told where the change came from.
    let mut remote_change = None;
    // The event is published before the change is readable, so it is queued by now.
    while let Ok(event) = a_log.try_recv() {
        if let NodeEvent::DocumentChanged {
            doc: d,
            origin,
            paths,
            ..
        } = event
            && d == doc
            && origin != Origin::Local
        {
            remote_change = Some((origin, paths));
        }
    }
    let (origin, paths) = remote_change.expect("a remote DocumentChanged on A");
    assert_eq!(origin, Origin::Remote(Some(b.peer_id())));
    assert!(paths.contains(&"/firstDance".to_string()), "{paths:?}");

    // Both list it with its metadata, and agree on its heads.
    let list_a = a.list().await.unwrap();
    let list_b = b.list().await.unwrap();
    assert_eq!(list_a.len(), 1);
    assert_eq!(list_a[0].id, doc);
    assert_eq!(list_a[0].title.as_deref(), Some("Run of show"));
    assert_eq!(list_a[0].priority, 10);
    assert!(!list_a[0].deleted);
    let (_, heads_a) = a.read_with_heads(doc).await.unwrap();
    let (_, heads_b) = b.read_with_heads(doc).await.unwrap();
    assert_eq!(heads_a, heads_b);
    assert_eq!(list_b[0].heads, list_a[0].heads);

    // History holds both changes; the first version is still readable.
    let history = a.history(doc).await.unwrap();
    assert!(
        history
            .iter()
            .any(|h| h.message.as_deref() == Some("moved"))
    );
    let first = a.read_at(doc, vec![history[0].hash]).await.unwrap();
    assert_eq!(first["firstDance"], "21:00");

    // Ephemeral data reaches the peer as an event, tagged with the sender.
    let mut b_log = b.subscribe();
    a.broadcast(doc, b"cursor at /firstDance".to_vec())
        .await
        .unwrap();
    let (from, data) = guard("ephemeral on B", async {
        loop {
            match b_log.recv().await {
                Ok(NodeEvent::Ephemeral { doc: d, from, data }) if d == doc => {
                    return (from, data);
                }
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => panic!("B stopped"),
            }
        }
    })
    .await;
    assert_eq!(from, a.peer_id().to_string());
    assert_eq!(data, b"cursor at /firstDance");

    // Status sees the peer on both layers.
    let status = a.status().await.unwrap();
    assert_eq!(status.documents, 1);
    assert!(status.storage_id.is_some());
    let peer = status
        .peers
        .iter()
        .find(|p| p.peer == b.peer_id())
        .expect("B in A's status");
    assert!(peer.net.is_some());
    let sync = peer.sync.as_ref().expect("engine connection to B");
    assert!(sync.messages_in > 0 && sync.messages_out > 0);

    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test]
async fn concurrent_writes_to_one_field_converge_and_both_list_the_conflict() {
    let (dir_a, dir_b) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let a = start(dir_a.path()).await;
    let b = start(dir_b.path()).await;
    let mut b_events = b.subscribe();
    connect(&b, &a).await;
    let doc = a
        .create(json!({"florist": {"phone": "000"}}), 5, None)
        .await
        .unwrap();
    until_doc("the doc on B", &b, &mut b_events, doc, |_| true).await;

    // B goes offline; both devices change the phone number without seeing each other.
    b.shutdown().await;
    a.edit(doc, set("/florist/phone", json!("111")), None)
        .await
        .unwrap();
    let b = start(dir_b.path()).await;
    b.edit(doc, set("/florist/phone", json!("222")), None)
        .await
        .unwrap();

    let mut a_events = a.subscribe();
    let mut b_events = b.subscribe();
    connect(&b, &a).await;
    for (name, node, events) in [("A", &a, &mut a_events), ("B", &b, &mut b_events)] {
        let conflicts = until(&format!("the conflict on {name}"), events, || async {
            let c = node.conflicts(doc).await.unwrap();
            c.current
                .iter()
                .any(|c| c.path == "/florist/phone")
                .then_some(c)
        })
        .await;
        let values: Vec<&Value> = conflicts.current[0]
            .values
            .iter()
            .map(|v| &v.value)
            .collect();
        assert_eq!(values.len(), 2, "{name}: {values:?}");
        assert!(values.contains(&&json!("111")) && values.contains(&&json!("222")));
        assert!(
            conflicts.log.iter().any(|r| r.path == "/florist/phone"),
            "{name} logged the conflict"
        );
    }
    // One deterministic winner, the same on both.
    assert_eq!(a.read(doc).await.unwrap(), b.read(doc).await.unwrap());

    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test]
async fn a_restarted_leader_keeps_everything_and_catches_up_with_changes_made_while_down() {
    let (leader, follower) = leader_and_follower_dirs();
    restart_and_catch_up(leader, follower).await;
}

/// The survivor opens the new sync stream: the case where a stale stream of the old
/// connection could interfere.
#[tokio::test]
async fn a_restarted_follower_keeps_everything_and_catches_up_with_changes_made_while_down() {
    let (leader, follower) = leader_and_follower_dirs();
    restart_and_catch_up(follower, leader).await;
}

/// A and B sync; A stops; B edits and creates; A restarts from its directory with
/// everything it acknowledged, reconnects and catches up.
async fn restart_and_catch_up(dir_a: TempDir, dir_b: TempDir) {
    let a = start(dir_a.path()).await;
    let b = start(dir_b.path()).await;
    let mut b_events = b.subscribe();
    connect(&b, &a).await;
    let doc = a
        .create(json!({"vendors": ["florist"]}), 1, Some("Vendors".into()))
        .await
        .unwrap();
    a.edit(
        doc,
        vec![EditOp::Set {
            path: "/vendors/-".into(),
            value: json!("caterer"),
        }],
        None,
    )
    .await
    .unwrap();
    until_doc("both vendors on B", &b, &mut b_events, doc, |j| {
        j["vendors"].as_array().is_some_and(|v| v.len() == 2)
    })
    .await;
    let a_id = a.peer_id();
    let storage_id = a.status().await.unwrap().storage_id;

    // B knows A has everything before A leaves.
    poll("A in sync on B", || async {
        let sync = b.sync_status().await.unwrap();
        sync.iter()
            .all(|d| d.peers.iter().any(|p| p.peer == a_id && p.in_sync))
            .then_some(())
    })
    .await;

    a.shutdown().await;
    poll("A departed on B", || async {
        let peers = b.peers().await.unwrap();
        peers
            .iter()
            .any(|p| p.peer == a_id && p.departed.is_some() && p.net.is_none())
            .then_some(())
    })
    .await;
    // Gone, but nothing changed since: A is not missing anything yet.
    let missing_on_a = |sync: Vec<peerdoc_node::DocumentSync>| -> Vec<DocumentId> {
        sync.iter()
            .filter(|d| {
                d.peers
                    .iter()
                    .any(|p| p.peer == a_id && !p.connected && !p.in_sync)
            })
            .map(|d| d.id)
            .collect()
    };
    assert_eq!(missing_on_a(b.sync_status().await.unwrap()), vec![]);
    // While A is down, B keeps working.
    b.edit(doc, set("/band", json!("The Hay Bales")), None)
        .await
        .unwrap();
    let doc2 = b
        .create(json!({"checklist": []}), 0, Some("Setup".into()))
        .await
        .unwrap();
    // B lists both as missing on the departed A.
    let mut missing = missing_on_a(b.sync_status().await.unwrap());
    missing.sort();
    let mut expected = vec![doc, doc2];
    expected.sort();
    assert_eq!(missing, expected);

    // Same directory: same identity, same storage id, every acknowledged write.
    let a = start(dir_a.path()).await;
    assert_eq!(a.peer_id(), a_id);
    assert_eq!(a.status().await.unwrap().storage_id, storage_id);
    assert_eq!(
        a.read(doc).await.unwrap(),
        json!({"vendors": ["florist", "caterer"]})
    );
    let listed = a.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].title.as_deref(), Some("Vendors"));

    let mut a_events = a.subscribe();
    connect(&a, &b).await;
    until_doc("B's edit on A", &a, &mut a_events, doc, |j| {
        j["band"] == "The Hay Bales"
    })
    .await;
    until_doc("B's new doc on A", &a, &mut a_events, doc2, |_| true).await;
    // Back: B forgets the departure and judges A from the live connection.
    poll("A back and in sync on B", || async {
        let peers = b.peers().await.unwrap();
        let back = peers
            .iter()
            .any(|p| p.peer == a_id && p.departed.is_none() && p.sync.is_some());
        let sync = b.sync_status().await.unwrap();
        let in_sync = sync.iter().all(|d| {
            d.peers
                .iter()
                .any(|p| p.peer == a_id && p.connected && p.in_sync)
        });
        (back && in_sync).then_some(())
    })
    .await;

    b.shutdown().await;
    a.shutdown().await;
}

#[tokio::test]
async fn a_second_node_on_the_same_data_dir_is_refused_clearly() {
    let dir = TempDir::new().unwrap();
    let first = start(dir.path()).await;
    let mut second = NodeConfig::loopback(dir.path());
    // Fail at once instead of waiting for a lock another process may be releasing.
    second.store_lock_wait_ms = 0;
    let err = Node::start(second)
        .await
        .expect_err("the directory is in use");
    assert!(matches!(err, NodeError::DataDirLocked { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains("in use by another peerdoc node"),
        "{message}"
    );
    assert!(
        message.contains(&dir.path().display().to_string()),
        "{message}"
    );
    // The refused start did not disturb the running node.
    let doc = first.create(json!({"a": 1}), 0, None).await.unwrap();
    first.shutdown().await;
    // Once the first node stopped, the directory is free again.
    let again = start(dir.path()).await;
    assert_eq!(again.read(doc).await.unwrap(), json!({"a": 1}));
    again.shutdown().await;
}

#[tokio::test]
async fn unknown_documents_and_bad_edits_are_reported_as_such() {
    let dir = TempDir::new().unwrap();
    let node = start(dir.path()).await;
    let unknown = DocumentId::random(&mut rand::rngs::StdRng::seed_from_u64(7));
    match node.read(unknown).await {
        Err(NodeError::DocumentNotFound(d)) => assert_eq!(d, unknown),
        other => panic!("expected DocumentNotFound, got {other:?}"),
    }
    assert!(matches!(
        node.edit(unknown, set("/x", json!(1)), None).await,
        Err(NodeError::DocumentNotFound(_))
    ));

    let doc = node.create(json!({"list": []}), 0, None).await.unwrap();
    let bad = node.edit(doc, set("/list/7", json!(1)), None).await;
    assert!(matches!(bad, Err(NodeError::InvalidChange(_))), "{bad:?}");
    assert_eq!(node.read(doc).await.unwrap(), json!({"list": []}));

    node.delete(doc).await.unwrap();
    assert!(matches!(
        node.read(doc).await,
        Err(NodeError::DocumentDeleted(_))
    ));
    assert!(node.list().await.unwrap()[0].deleted);

    let handle = node.handle();
    node.shutdown().await;
    assert!(matches!(
        handle.read(doc).await,
        Err(NodeError::ShuttingDown)
    ));
    // Shutting down twice is harmless.
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn export_and_import_round_trip_a_document() {
    let dir = TempDir::new().unwrap();
    let node = start(dir.path()).await;
    let doc = node.create(json!({"seats": 120}), 0, None).await.unwrap();
    let bytes = node.export(doc).await.unwrap();
    let copy = node.import(bytes, 3, Some("copy".into())).await.unwrap();
    assert_ne!(copy, doc);
    assert_eq!(node.read(copy).await.unwrap(), json!({"seats": 120}));
    assert!(matches!(
        node.import(b"not automerge".to_vec(), 0, None).await,
        Err(NodeError::InvalidDocument(_))
    ));
    node.set_meta(copy, Some(9), None).await.unwrap();
    let listed = node.list().await.unwrap();
    let summary = listed.iter().find(|s| s.id == copy).unwrap();
    assert_eq!(
        (summary.priority, summary.title.as_deref()),
        (9, Some("copy"))
    );
    node.shutdown().await;
}
