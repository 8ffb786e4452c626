//! Gossip announcements between nodes in one process (127.0.0.1, mDNS off): an edit
//! fans out along a line of nodes, a lost announcement is repaired by the sync streams,
//! and a peer publishing garbage on the team topic is banned.
//!
//! Every wait has a generous timeout that only guards against a hang; assertions are
//! about what happened, never how fast.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use peerdoc_core::DocumentId;
use peerdoc_net::{NetConfig, NetEvent, Network, PublishOutcome};
use peerdoc_node::{EditOp, Multiaddr, Node, NodeConfig, NodeError, NodeEvent, NodeHandle, PeerId};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::broadcast::{Receiver, error::RecvError};

/// Failure guard for any single wait.
const GUARD: Duration = Duration::from_secs(60);

async fn guard<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(GUARD, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

async fn start(dir: &TempDir, announce: bool) -> Node {
    let mut config = NodeConfig::loopback(dir.path());
    config.announce_changes = announce;
    assert!(
        !config.net.enable_mdns,
        "tests never run mDNS in the host namespace"
    );
    guard("node start", Node::start(config))
        .await
        .unwrap_or_else(|e| panic!("start: {e}"))
}

async fn listen_addr(node: &NodeHandle) -> Multiaddr {
    let addrs = node.status().await.unwrap().listen_addrs;
    addrs.first().cloned().expect("node listens somewhere")
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

/// Dials `to` from `from` and waits until both finished the sync handshake.
async fn connect(from: &NodeHandle, to: &NodeHandle) {
    let mut from_events = from.subscribe();
    let mut to_events = to.subscribe();
    assert_eq!(
        from.dial(listen_addr(to).await).await.unwrap(),
        to.peer_id()
    );
    wait_connected(&mut from_events, to.peer_id()).await;
    wait_connected(&mut to_events, from.peer_id()).await;
}

/// Waits until `doc` on `node` reads as something `check` accepts.
async fn until_doc(node: &NodeHandle, doc: DocumentId, check: impl Fn(&Value) -> bool) -> Value {
    let mut events = node.subscribe();
    guard("the document to arrive", async {
        loop {
            match node.read(doc).await {
                Ok(json) if check(&json) => return json,
                Ok(_) | Err(NodeError::DocumentNotFound(_)) => {}
                Err(e) => panic!("read: {e}"),
            }
            match tokio::time::timeout(Duration::from_millis(200), events.recv()).await {
                Ok(Ok(_) | Err(RecvError::Lagged(_))) | Err(_) => {}
                Ok(Err(RecvError::Closed)) => panic!("node stopped"),
            }
        }
    })
    .await
}

fn set(path: &str, value: Value) -> Vec<EditOp> {
    vec![EditOp::Set {
        path: path.into(),
        value,
    }]
}

/// Three nodes in a line, A–B–C; C has no connection to A.
async fn line(announce: bool) -> ([TempDir; 3], [Node; 3]) {
    let dirs = [
        TempDir::new().unwrap(),
        TempDir::new().unwrap(),
        TempDir::new().unwrap(),
    ];
    let a = start(&dirs[0], announce).await;
    let b = start(&dirs[1], announce).await;
    let c = start(&dirs[2], announce).await;
    connect(&a, &b).await;
    connect(&b, &c).await;
    (dirs, [a, b, c])
}

async fn edit_on_a_reaches_c(nodes: &[Node; 3]) {
    let [a, b, c] = nodes;
    let doc = a
        .create(json!({"firstDance": "21:00"}), 0, None)
        .await
        .unwrap();
    until_doc(c, doc, |v| v["firstDance"] == "21:00").await;
    a.edit(doc, set("/firstDance", json!("21:15")), None)
        .await
        .unwrap();
    until_doc(c, doc, |v| v["firstDance"] == "21:15").await;
    until_doc(b, doc, |v| v["firstDance"] == "21:15").await;
    let c_peers: Vec<PeerId> = c.peers().await.unwrap().iter().map(|p| p.peer).collect();
    assert!(
        !c_peers.contains(&a.peer_id()),
        "C reached A only through B"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_on_a_reaches_c_through_b() {
    let (_dirs, nodes) = line(true).await;
    edit_on_a_reaches_c(&nodes).await;
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_announcements_the_sync_streams_still_deliver() {
    // Every announcement lost: the per-peer streams push and relay the change anyway.
    let (_dirs, nodes) = line(false).await;
    edit_on_a_reaches_c(&nodes).await;
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_publishing_garbage_gossip_is_banned() {
    let dir = TempDir::new().unwrap();
    let node = start(&dir, true).await;
    // A bare transport on the same (open) team topic, which speaks no announcements.
    let keypair = peerdoc_net::Keypair::generate_ed25519();
    let (spammer, mut events, event_loop) = Network::new(NetConfig::loopback(), keypair).unwrap();
    tokio::spawn(event_loop.run());
    spammer.dial(listen_addr(&node).await).await.unwrap();

    guard("the spammer to be banned", async {
        let mut n = 0u32;
        loop {
            n += 1;
            // Distinct bytes each time: gossip drops repeats of the same message.
            let garbage = Bytes::from(format!("\u{1}not an announcement {n}"));
            match spammer.publish(garbage).await {
                Ok(PublishOutcome::Sent) => {}
                // The topic subscription has not reached the node yet.
                Ok(_) | Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
            let banned = std::iter::from_fn(|| events.try_recv().ok())
                .any(|e| matches!(e, NetEvent::PeerDisconnected { .. }));
            if banned {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    // The node dropped it (the net crate's tests show a ban refuses redials), and is
    // otherwise fine.
    let spammer_id = spammer.local_peer_id();
    guard("the node to drop the spammer", async {
        while node
            .peers()
            .await
            .unwrap()
            .iter()
            .any(|p| p.peer == spammer_id)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let doc = node.create(json!({"ok": true}), 0, None).await.unwrap();
    assert_eq!(node.read(doc).await.unwrap()["ok"], true);
    node.shutdown().await;
}
