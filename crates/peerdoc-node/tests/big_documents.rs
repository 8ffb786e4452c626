//! A big document is built off the driver: while a 2 MB text document is being created
//! (seconds of automerge work), edits of other documents go on and finish first, and the
//! big document still comes out whole, written by this device's actor.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use automerge::Automerge;
use peerdoc_node::{EditOp, Node, NodeConfig};
use serde_json::json;
use tempfile::TempDir;

/// Failure guard only.
const GUARD: Duration = Duration::from_secs(120);

fn first_actor_prefix(saved: &[u8]) -> Vec<u8> {
    let doc = Automerge::load(saved).unwrap();
    let changes = doc.get_changes(&[]);
    changes[0].actor_id().to_bytes()[..8].to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_of_other_documents_finish_while_a_big_one_is_built() {
    let dir = TempDir::new().unwrap();
    let node = Node::start(NodeConfig::loopback(dir.path())).await.unwrap();
    let small = node.create(json!({"n": 0}), 0, None).await.unwrap();

    // Completion order, shared by the big create and the edits.
    let order = Arc::new(AtomicUsize::new(0));
    let text: String = "The band arrives at 18:00; sound check at 18:30. "
        .chars()
        .cycle()
        .take(2 * 1024 * 1024)
        .collect();
    let big = {
        let (handle, order, text) = (node.handle(), order.clone(), text.clone());
        tokio::spawn(async move {
            let id = handle.create(json!({"notes": text}), 0, None).await;
            (id, order.fetch_add(1, Ordering::SeqCst))
        })
    };
    let mut edits_done = Vec::new();
    let work = async {
        for i in 0..20 {
            node.edit(
                small,
                vec![EditOp::Set {
                    path: "/n".into(),
                    value: json!(i),
                }],
                None,
            )
            .await
            .unwrap();
            edits_done.push(order.fetch_add(1, Ordering::SeqCst));
        }
        big.await.unwrap()
    };
    let (big_id, big_done) = tokio::time::timeout(GUARD, work).await.expect("no hang");
    let big_id = big_id.unwrap();
    assert!(
        edits_done.iter().all(|&e| e < big_done),
        "edits finished at {edits_done:?}, the big create at {big_done}: the edits waited for it"
    );

    let content = node.read(big_id).await.unwrap();
    assert_eq!(content["notes"].as_str().map(str::len), Some(text.len()));
    // Written by this device, like any change it makes in the engine.
    let big_saved = node.export(big_id).await.unwrap();
    let small_saved = node.export(small).await.unwrap();
    assert_eq!(
        first_actor_prefix(&big_saved),
        first_actor_prefix(&small_saved)
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_content_and_bad_bytes_are_refused_off_the_driver_too() {
    let dir = TempDir::new().unwrap();
    let node = Node::start(NodeConfig::loopback(dir.path())).await.unwrap();
    let error = node.create(json!([1, 2]), 0, None).await.unwrap_err();
    assert!(
        matches!(error, peerdoc_node::NodeError::InvalidChange(_)),
        "{error}"
    );
    let error = node
        .import(b"not automerge".to_vec(), 0, None)
        .await
        .unwrap_err();
    assert!(
        matches!(error, peerdoc_node::NodeError::InvalidDocument(_)),
        "{error}"
    );
    // Nothing half-made is left behind, and the node still works.
    assert!(node.list().await.unwrap().is_empty());
    let id = node.create(json!({"ok": true}), 0, None).await.unwrap();
    let saved = node.export(id).await.unwrap();
    let copy = node.import(saved, 0, None).await.unwrap();
    assert_eq!(node.read(copy).await.unwrap(), json!({"ok": true}));
    node.shutdown().await;
}
