//! Connections attached over a transport the node does not own
//! ([`NodeHandle::attach`]): two nodes piped together in memory, a plain automerge-repo
//! peer that reads too slowly, and one that sends garbage.
//!
//! Timeouts only guard against a hang; assertions are about what happened.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use peerdoc_core::PeerId as RepoPeerId;
use peerdoc_core::wire::Message;
use peerdoc_node::{AttachRole, AttachedConnection, Node, NodeConfig, NodeError};
use serde_json::json;
use tempfile::TempDir;

const GUARD: Duration = Duration::from_secs(60);

async fn guard<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(GUARD, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

async fn start(dir: &TempDir, tune: impl FnOnce(&mut NodeConfig)) -> Node {
    let mut config = NodeConfig::loopback(dir.path());
    config.net.listen_addrs.clear();
    assert!(!config.net.enable_mdns, "no mDNS in the host namespace");
    tune(&mut config);
    guard("node start", Node::start(config))
        .await
        .unwrap_or_else(|e| panic!("start: {e}"))
}

/// Moves frames both ways between two attached connections until either closes.
async fn pipe(mut a: AttachedConnection, mut b: AttachedConnection) {
    loop {
        tokio::select! {
            frame = a.recv() => match frame {
                Some(frame) => if b.send(frame).await.is_err() { return },
                None => return,
            },
            frame = b.recv() => match frame {
                Some(frame) => if a.send(frame).await.is_err() { return },
                None => return,
            },
        }
    }
}

fn plain_join() -> Bytes {
    Bytes::from(
        Message::Join {
            sender_id: RepoPeerId::new("js-client".to_owned()),
            supported_protocol_versions: vec!["1".to_owned()],
            metadata: None,
        }
        .encode(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_sync_over_an_attached_pipe() {
    let (dir_a, dir_b) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let a = start(&dir_a, |_| {}).await;
    let b = start(&dir_b, |_| {}).await;
    let doc = a
        .create(json!({"table": 7}), 0, Some("seating".into()))
        .await
        .unwrap();

    let dialer = a.attach(AttachRole::Initiator, "pipe to b").await.unwrap();
    let acceptor = b
        .attach(AttachRole::Responder, "pipe from a")
        .await
        .unwrap();
    let piping = tokio::spawn(pipe(dialer, acceptor));

    let value = guard("the document reaching b", async {
        loop {
            match b.read(doc).await {
                Ok(value) => return value,
                Err(NodeError::DocumentNotFound(_)) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(other) => panic!("read on b: {other}"),
            }
        }
    })
    .await;
    assert_eq!(value, json!({"table": 7}));

    // And back: an edit on b reaches a over the same pipe.
    b.edit(
        doc,
        vec![peerdoc_node::EditOp::Set {
            path: "/table".into(),
            value: json!(9),
        }],
        None,
    )
    .await
    .unwrap();
    guard("the edit reaching a", async {
        while a.read(doc).await.unwrap()["table"] != json!(9) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    piping.abort();
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_does_not_read_is_detached_not_buffered() {
    let dir = TempDir::new().unwrap();
    let node = start(&dir, |c| {
        c.attached_queue_len = 1;
        c.announce_to_plain_peers = true;
    })
    .await;
    for n in 0..4 {
        node.create(json!({ "n": n }), 0, None).await.unwrap();
    }
    let mut conn = node.attach(AttachRole::Responder, "slow").await.unwrap();
    conn.send(plain_join()).await.unwrap();
    // The node answers `peer` and pushes its documents; with room for one frame and
    // nobody reading, it gives up on the connection instead of queueing more.
    guard("the node trying to send past the queue", async {
        while node.metrics().messages_sent < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let mut frames = 0;
    while guard("the connection closing", conn.recv()).await.is_some() {
        frames += 1;
    }
    assert!(frames <= 1, "at most the queue's one frame: {frames}");
    let reason = conn.close_reason().expect("a reason");
    assert!(reason.contains("slow consumer"), "{reason}");
    assert!(
        !conn.closed_for_misbehaviour(),
        "slowness is not misbehaviour"
    );
    assert!(matches!(
        conn.send(plain_join()).await,
        Err(NodeError::ConnectionClosed)
    ));

    // The node keeps serving: a well-behaved connection still works.
    let mut good = node.attach(AttachRole::Responder, "good").await.unwrap();
    good.send(plain_join()).await.unwrap();
    let first = guard("the peer reply", good.recv()).await.expect("a frame");
    let reply = Message::decode(&first, 1 << 20).unwrap();
    assert_eq!(reply.type_name(), "peer");
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_closes_the_connection_with_a_reason() {
    let dir = TempDir::new().unwrap();
    let node = start(&dir, |_| {}).await;
    let mut conn = node.attach(AttachRole::Responder, "garbage").await.unwrap();
    conn.send(Bytes::from_static(b"\xff\x00 not cbor"))
        .await
        .unwrap();
    assert!(guard("the connection closing", conn.recv()).await.is_none());
    let reason = conn.close_reason().expect("a reason");
    assert!(!reason.is_empty());
    assert!(conn.closed_for_misbehaviour(), "{reason}");
    // Nothing was lost: the node still answers.
    assert!(node.list().await.unwrap().is_empty());
    node.shutdown().await;
}
