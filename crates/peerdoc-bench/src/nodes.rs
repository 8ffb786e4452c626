//! Several `peerdoc_node::Node`s in this process on 127.0.0.1 with mDNS off, each in its
//! own temporary data directory.

use std::path::Path;
use std::time::Duration;

use peerdoc_node::{DocumentId, Multiaddr, Node, NodeConfig, NodeEvent, NodeHandle, PeerId};
use tempfile::TempDir;
use tokio::sync::broadcast::{Receiver, error::RecvError};

/// Hang guard for any single wait (never a measurement).
pub(crate) const GUARD: Duration = Duration::from_secs(120);

/// A node and the directory it lives in (removed when dropped).
#[derive(Debug)]
pub(crate) struct TempNode {
    pub(crate) node: Node,
    _dir: TempDir,
}

/// The loopback configuration every benchmark node uses.
pub(crate) fn loopback_config(dir: &Path) -> anyhow::Result<NodeConfig> {
    let config = NodeConfig::loopback(dir);
    // Never multicast from the benchmark: it runs in the machine's own namespace.
    anyhow::ensure!(!config.net.enable_mdns, "mDNS must be off");
    Ok(config)
}

/// Starts a node in a fresh directory under `base`.
pub(crate) async fn start_temp(base: &Path) -> anyhow::Result<TempNode> {
    let dir = tempfile::tempdir_in(base)?;
    let node = guard("node start", Node::start(loopback_config(dir.path())?)).await??;
    Ok(TempNode { node, _dir: dir })
}

/// `fut`, or an error after [`GUARD`].
pub(crate) async fn guard<T>(what: &str, fut: impl Future<Output = T>) -> anyhow::Result<T> {
    tokio::time::timeout(GUARD, fut)
        .await
        .map_err(|_| anyhow::anyhow!("timed out waiting for {what}"))
}

async fn listen_addr(node: &NodeHandle) -> anyhow::Result<Multiaddr> {
    let addrs = node.status().await?.listen_addrs;
    addrs
        .into_iter()
        .find(|a| a.to_string().starts_with("/ip4/127.0.0.1/"))
        .ok_or_else(|| anyhow::anyhow!("node listens on no loopback address"))
}

async fn wait_connected(events: &mut Receiver<NodeEvent>, peer: PeerId) -> anyhow::Result<()> {
    guard("PeerConnected", async {
        loop {
            match events.recv().await {
                Ok(NodeEvent::PeerConnected { peer: p, .. }) if p == peer => return Ok(()),
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => anyhow::bail!("node stopped"),
            }
        }
    })
    .await?
}

/// Dials `to` from `from` and waits until both finished the sync handshake.
pub(crate) async fn connect(from: &NodeHandle, to: &NodeHandle) -> anyhow::Result<()> {
    let mut from_events = from.subscribe();
    let mut to_events = to.subscribe();
    from.dial(listen_addr(to).await?).await?;
    wait_connected(&mut from_events, to.peer_id()).await?;
    wait_connected(&mut to_events, from.peer_id()).await?;
    Ok(())
}

/// Waits until `doc` on `node` has the heads `heads` (hex), re-checking after each event.
pub(crate) async fn until_heads(
    node: &NodeHandle,
    events: &mut Receiver<NodeEvent>,
    doc: DocumentId,
    heads: &[automerge::ChangeHash],
) -> anyhow::Result<()> {
    guard("a document's heads", async {
        loop {
            if let Ok((_, h)) = node.read_with_heads(doc).await
                && h == heads
            {
                return Ok(());
            }
            match events.recv().await {
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => anyhow::bail!("node stopped"),
            }
        }
    })
    .await?
}

/// Waits for `DocumentChanged` of `doc` reaching `heads` (visible), then until the node
/// has no storage operation in flight (so the change is durable too). Returns the two
/// instants.
pub(crate) async fn until_visible_and_durable(
    node: &NodeHandle,
    events: &mut Receiver<NodeEvent>,
    doc: DocumentId,
    heads: &[automerge::ChangeHash],
) -> anyhow::Result<(std::time::Instant, std::time::Instant)> {
    let visible = guard("the change to arrive", async {
        loop {
            match events.recv().await {
                Ok(NodeEvent::DocumentChanged {
                    doc: d, heads: h, ..
                }) if d == doc && h == heads => {
                    return Ok(std::time::Instant::now());
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => {
                    if node
                        .read_with_heads(doc)
                        .await
                        .is_ok_and(|(_, h)| h == heads)
                    {
                        return Ok(std::time::Instant::now());
                    }
                }
                Err(RecvError::Closed) => anyhow::bail!("node stopped"),
            }
        }
    })
    .await??;
    let durable = guard("the change to be durable", async {
        loop {
            if node.status().await?.storage_in_flight == 0 {
                return Ok::<_, anyhow::Error>(std::time::Instant::now());
            }
            tokio::task::yield_now().await;
        }
    })
    .await??;
    Ok((visible, durable))
}
