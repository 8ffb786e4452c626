//! A node whose every queue holds one item still answers every command: bounded queues
//! slow callers down, they never drop or reorder work.

use std::time::Duration;

use peerdoc_node::{EditOp, Node, NodeConfig};
use serde_json::json;
use tempfile::TempDir;

/// Failure guard only.
const GUARD: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_queues_still_answer_every_command_in_order() {
    let dir = TempDir::new().unwrap();
    let mut config = NodeConfig::loopback(dir.path());
    config.command_queue_len = 1;
    config.max_pending_commands = 1;
    config.storage_queue_len = 1;
    config.event_queue_len = 1;
    assert!(!config.net.enable_mdns);
    let node = Node::start(config).await.unwrap();

    let work = async {
        let creates = (0..40).map(|i| {
            let handle = node.handle();
            tokio::spawn(async move { handle.create(json!({"n": i}), 0, None).await })
        });
        let mut docs = Vec::new();
        for task in creates {
            docs.push(task.await.unwrap().unwrap());
        }
        // Many edits to one document from concurrent callers: all durable, none lost.
        let doc = docs[0];
        let edits = (0..40).map(|i| {
            let handle = node.handle();
            tokio::spawn(async move {
                handle
                    .edit(
                        doc,
                        vec![EditOp::Set {
                            path: format!("/k{i}"),
                            value: json!(i),
                        }],
                        None,
                    )
                    .await
            })
        });
        for task in edits {
            task.await.unwrap().unwrap();
        }
        docs
    };
    let docs = tokio::time::timeout(GUARD, work)
        .await
        .expect("no deadlock");

    assert_eq!(node.list().await.unwrap().len(), 40);
    let first = node.read(docs[0]).await.unwrap();
    for i in 0..40 {
        assert_eq!(first[format!("k{i}")], json!(i));
    }
    node.shutdown().await;

    // Everything acknowledged is on disk.
    let node = Node::start(NodeConfig::loopback(dir.path())).await.unwrap();
    assert_eq!(node.list().await.unwrap().len(), 40);
    assert_eq!(node.read(docs[0]).await.unwrap(), first);
    node.shutdown().await;
}
