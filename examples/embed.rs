//! Two peerdoc nodes in one process, on loopback only: one creates a run-of-show
//! document, the other receives it over the sync protocol and prints it.
//!
//! ```text
//! cargo run -p peerdoc-examples --bin embed
//! ```
//!
//! Nothing leaves this machine: both nodes listen on 127.0.0.1 with mDNS off and find
//! each other by an explicit dial.

use std::time::Duration;

use peerdoc_node::{DocumentId, Node, NodeConfig, NodeError, NodeEvent, NodeHandle};
use tokio::sync::broadcast::error::RecvError;

/// Failure guard: the example gives up instead of hanging if something is broken.
const GUARD: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let planner_dir = tempfile::tempdir()?;
    let photographer_dir = tempfile::tempdir()?;
    let planner = Node::start(NodeConfig::loopback(planner_dir.path())).await?;
    let photographer = Node::start(NodeConfig::loopback(photographer_dir.path())).await?;
    println!("planner      {}", planner.peer_id());
    println!("photographer {}", photographer.peer_id());

    let doc = planner
        .create(
            serde_json::json!({
                "event": "Barn wedding",
                "firstDance": "21:00",
                "shots": ["rings", "first dance"],
            }),
            10,
            Some("Run of show".into()),
        )
        .await?;
    println!("planner created {doc} (durable)");

    // Subscribe before connecting so that no event is missed, then dial the planner.
    let mut events = photographer.subscribe();
    let planner_addr = planner
        .status()
        .await?
        .listen_addrs
        .into_iter()
        .next()
        .ok_or("the planner has no listen address")?;
    photographer.dial(planner_addr).await?;

    let json = tokio::time::timeout(GUARD, wait_for(&photographer, &mut events, doc))
        .await
        .map_err(|_| "the document did not arrive in time")??;
    println!(
        "photographer sees:\n{}",
        serde_json::to_string_pretty(&json)?
    );

    photographer.shutdown().await;
    planner.shutdown().await;
    println!("both nodes stopped");
    Ok(())
}

/// Waits until `doc` is readable on `node`, re-checking after every event.
async fn wait_for(
    node: &NodeHandle,
    events: &mut tokio::sync::broadcast::Receiver<NodeEvent>,
    doc: DocumentId,
) -> Result<serde_json::Value, NodeError> {
    loop {
        match node.read(doc).await {
            Ok(json) => return Ok(json),
            Err(NodeError::DocumentNotFound(_)) => {}
            Err(other) => return Err(other),
        }
        match events.recv().await {
            Ok(_) | Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => return Err(NodeError::ShuttingDown),
        }
    }
}
