//! Items 1 and 2 through real daemons: two `peerdoc_node::Node`s on 127.0.0.1 (sled
//! storage, libp2p, mDNS off). Cold sync of N documents to an empty node, then a restart
//! of that node and a reconnect with nothing changed. Messages and bytes come from the
//! engine's per-connection counters.

use std::path::Path;
use std::time::{Duration, Instant};

use peerdoc_node::{Node, NodeHandle, PeerId};

use crate::nodes::{self, guard};
use crate::plain::Exchange;

/// How often the state is polled while waiting (the measurement's resolution).
const POLL: Duration = Duration::from_millis(1);
/// A connection whose counters did not move for this long is taken as quiet.
const QUIET: Duration = Duration::from_millis(300);

/// Creates `n` small documents with 16 concurrent callers.
pub(crate) async fn create_docs(node: &NodeHandle, n: usize) -> anyhow::Result<()> {
    let writers = 16;
    let mut tasks = Vec::with_capacity(writers);
    for w in 0..writers {
        let handle = node.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..n).step_by(writers) {
                handle
                    .create(
                        serde_json::json!({"i": i, "title": format!("run of show {i}")}),
                        0,
                        None,
                    )
                    .await?;
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// (messages, bytes) both ways on `node`'s sync connection to `peer`.
async fn counters(node: &NodeHandle, peer: PeerId) -> anyhow::Result<Option<(u64, u64, usize)>> {
    Ok(node
        .peers()
        .await?
        .into_iter()
        .find(|p| p.peer == peer)
        .and_then(|p| p.sync)
        .map(|s| {
            (
                s.messages_in + s.messages_out,
                s.bytes_in + s.bytes_out,
                s.queued_syncs + s.active_syncs,
            )
        }))
}

/// Waits until the connection from `node` to `peer` has no sync queued or running and
/// its counters stayed still for [`QUIET`]; returns the counters and when they last
/// moved.
async fn until_quiet(node: &NodeHandle, peer: PeerId) -> anyhow::Result<(u64, u64, Instant)> {
    guard("the connection to go quiet", async {
        let mut last = (0, 0);
        let mut moved = Instant::now();
        loop {
            if let Some((messages, bytes, busy)) = counters(node, peer).await? {
                if (messages, bytes) != last {
                    last = (messages, bytes);
                    moved = Instant::now();
                } else if busy == 0 && moved.elapsed() >= QUIET {
                    return Ok((last.0, last.1, moved));
                }
            }
            tokio::time::sleep(POLL).await;
        }
    })
    .await?
}

/// Results of one run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NodeSync {
    /// Cold sync: time until the empty node knew every document; messages and bytes
    /// until the connection went quiet.
    pub(crate) cold: Exchange,
    /// Reconnect after restarting the receiver: time from dial until the last message.
    pub(crate) reconnect: Exchange,
}

/// Runs cold sync then reconnect with `n` documents.
pub(crate) async fn cold_then_reconnect(base: &Path, n: usize) -> anyhow::Result<NodeSync> {
    let holder = nodes::start_temp(base).await?;
    create_docs(&holder.node, n).await?;
    let receiver_dir = tempfile::tempdir_in(base)?;
    let receiver = Node::start(nodes::loopback_config(receiver_dir.path())?).await?;

    let start = Instant::now();
    nodes::connect(&receiver, &holder.node).await?;
    guard("every document on the empty node", async {
        while receiver.status().await?.documents < n {
            tokio::time::sleep(POLL).await;
        }
        Ok::<_, anyhow::Error>(())
    })
    .await??;
    let cold_time = start.elapsed();
    let (messages, bytes, _) = until_quiet(&holder.node, receiver.peer_id()).await?;
    let cold = Exchange {
        messages,
        bytes,
        round_trips: 0,
        time: cold_time,
    };

    let receiver_id = receiver.peer_id();
    receiver.shutdown().await;
    // Wait until the holder saw the old connection go, so the counters below are the
    // new connection's alone.
    guard("the old connection to close", async {
        while counters(&holder.node, receiver_id).await?.is_some() {
            tokio::time::sleep(POLL).await;
        }
        Ok::<_, anyhow::Error>(())
    })
    .await??;
    let receiver = Node::start(nodes::loopback_config(receiver_dir.path())?).await?;
    let start = Instant::now();
    nodes::connect(&receiver, &holder.node).await?;
    let (messages, bytes, last_moved) = until_quiet(&holder.node, receiver.peer_id()).await?;
    let reconnect = Exchange {
        messages,
        bytes,
        round_trips: 0,
        time: last_moved.saturating_duration_since(start),
    };
    anyhow::ensure!(
        receiver.status().await?.documents == n,
        "the restarted node lost documents"
    );
    receiver.shutdown().await;
    holder.node.shutdown().await;
    Ok(NodeSync { cold, reconnect })
}
