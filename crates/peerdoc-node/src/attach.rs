//! [`AttachedConnection`]: a sync connection over a transport the node does not own.
//!
//! libp2p sessions are the node's own; anything else that can carry automerge-repo
//! messages (a WebSocket from a browser, a WebSocket to a stock sync server, an
//! embedder's pipe) is attached with [`NodeHandle::attach`](crate::NodeHandle::attach).
//! The caller moves whole frames (one automerge-repo CBOR message each) between its
//! transport and the [`AttachedConnection`]; the driver feeds them to the engine like
//! frames from a libp2p peer.
//!
//! Both directions are bounded. Inbound, [`AttachedConnection::send`] waits for room,
//! which stops the caller reading its transport. Outbound, the driver never waits: a
//! consumer that lets `frame_queue_len` frames pile up is detached (the engine closes
//! the connection, its sync state is kept) and [`AttachedConnection::recv`] returns
//! `None` with a [`close_reason`](AttachedConnection::close_reason).

use bytes::Bytes;
use peerdoc_core::ConnectionId;
use tokio::sync::{mpsc, oneshot};

use crate::NodeError;

/// Which side of the automerge-repo handshake the node plays on an attached connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachRole {
    /// The node speaks first (sends `join`): it dialled a server.
    Initiator,
    /// The other side speaks first: the node accepted the connection.
    Responder,
    /// The node dialled one of its team's cloud endpoints (an automerge-repo sync
    /// server): it speaks first, and what the server confirms holding is kept as cloud
    /// receipts (not proof of durable storage: a stock server reports heads before it
    /// writes them).
    Cloud,
}

/// One attached connection, as the transport side sees it.
///
/// Dropping it closes the connection on the node's side.
#[derive(Debug)]
pub struct AttachedConnection {
    pub(crate) conn: ConnectionId,
    pub(crate) label: String,
    pub(crate) to_node: mpsc::Sender<Bytes>,
    pub(crate) from_node: mpsc::Receiver<Bytes>,
    pub(crate) closed: oneshot::Receiver<(String, bool)>,
    pub(crate) reason: Option<(String, bool)>,
}

impl AttachedConnection {
    /// The engine's id for this connection.
    pub fn id(&self) -> ConnectionId {
        self.conn
    }

    /// The label given to [`NodeHandle::attach`](crate::NodeHandle::attach) (for logs).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Hands one frame received from the transport to the node; waits while the
    /// node's inbound queue for this connection is full.
    ///
    /// # Errors
    /// [`NodeError::ConnectionClosed`] once the node has closed the connection or
    /// stopped.
    pub async fn send(&self, frame: Bytes) -> Result<(), NodeError> {
        // The driver drops its sender the moment it closes the connection.
        if self.from_node.is_closed() {
            return Err(NodeError::ConnectionClosed);
        }
        self.to_node
            .send(frame)
            .await
            .map_err(|_| NodeError::ConnectionClosed)
    }

    /// The next frame to write to the transport. `None` once the node closed the
    /// connection (the engine disconnected it, it was too slow, or the node stopped):
    /// close the transport then, with [`close_reason`](Self::close_reason).
    pub async fn recv(&mut self) -> Option<Bytes> {
        self.from_node.recv().await
    }

    /// Why the node closed the connection, once [`recv`](Self::recv) returned `None`.
    pub fn close_reason(&mut self) -> Option<String> {
        self.poll_closed().map(|(reason, _)| reason)
    }

    /// Whether the node closed the connection because the other side broke the
    /// protocol (undecodable, oversized or out-of-protocol messages), once
    /// [`recv`](Self::recv) returned `None`.
    pub fn closed_for_misbehaviour(&mut self) -> bool {
        self.poll_closed().is_some_and(|(_, misbehaved)| misbehaved)
    }

    fn poll_closed(&mut self) -> Option<(String, bool)> {
        if self.reason.is_none() {
            self.reason = self.closed.try_recv().ok();
        }
        self.reason.clone()
    }
}

/// The driver's side of one attached connection.
#[derive(Debug)]
pub(crate) struct AttachedSlot {
    pub(crate) label: String,
    pub(crate) to_transport: mpsc::Sender<Bytes>,
    pub(crate) closed: oneshot::Sender<(String, bool)>,
    /// Dropped with the slot: ends the inbound stream, so the transport's sends fail.
    pub(crate) _stop: oneshot::Sender<()>,
}

/// The channels of a new attached connection: the caller's end and the driver's.
pub(crate) fn pair(
    conn: ConnectionId,
    label: String,
    frame_queue_len: usize,
) -> (
    AttachedConnection,
    AttachedSlot,
    mpsc::Receiver<Bytes>,
    oneshot::Receiver<()>,
) {
    let (to_node, inbound) = mpsc::channel(frame_queue_len);
    let (to_transport, from_node) = mpsc::channel(frame_queue_len);
    let (closed_tx, closed) = oneshot::channel();
    let (stop, stopped) = oneshot::channel();
    (
        AttachedConnection {
            conn,
            label: label.clone(),
            to_node,
            from_node,
            closed,
            reason: None,
        },
        AttachedSlot {
            label,
            to_transport,
            closed: closed_tx,
            _stop: stop,
        },
        inbound,
        stopped,
    )
}
