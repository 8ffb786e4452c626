//! What the network tells its caller: [`NetEvent`], [`PeerInfo`] and friends.

use std::{
    fmt,
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use libp2p::{Multiaddr, PeerId, multiaddr::Protocol};

/// Something that happened on the network.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum NetEvent {
    /// A sync stream to `peer` is open: from now on frames flow in order, until
    /// [`NetEvent::PeerDisconnected`]. There is at most one such stream per peer at a time,
    /// and its events are ordered: `PeerConnected`, its `Frame`s, `PeerDisconnected`.
    PeerConnected {
        /// The peer.
        peer: PeerId,
        /// This stream's id: frames for it go through [`crate::NetHandle::send_frame`]
        /// with this id, and a frame for an ended session is never sent on a later one.
        session: SessionId,
        /// Its address on the connection carrying the stream.
        addr: Multiaddr,
        /// Which transport that connection uses.
        transport: TransportKind,
    },
    /// The sync stream to `peer` ended; frames queued for it are dropped.
    PeerDisconnected {
        /// The peer.
        peer: PeerId,
        /// Which stream ended.
        session: SessionId,
    },
    /// One frame received on `peer`'s sync stream.
    Frame {
        /// The sender.
        peer: PeerId,
        /// The stream it arrived on.
        session: SessionId,
        /// The payload, at most `max_frame_size` bytes.
        bytes: Bytes,
    },
    /// A gossip message on the team topic. Best-effort: dropped when the caller lags.
    Gossip {
        /// The author (messages are signed, so this is authenticated).
        from: PeerId,
        /// The payload.
        bytes: Bytes,
    },
    /// A peer broke the protocol; it was disconnected and is banned for `ban_duration`.
    PeerMisbehaved {
        /// The peer.
        peer: PeerId,
        /// What it did.
        reason: Misbehaviour,
    },
    /// We listen on a new address.
    Listening {
        /// The address.
        addr: Multiaddr,
    },
    /// A dial failed (wrong team key, unreachable, refused). Explicit peers are retried
    /// with backoff.
    DialFailed {
        /// The peer, when known.
        peer: Option<PeerId>,
        /// What went wrong, for logs and health displays.
        error: String,
    },
    /// We refused a connection: the peer is banned or not on the allowlist.
    ConnectionDenied {
        /// The peer.
        peer: PeerId,
    },
}

/// Names one sync stream with a peer, from its [`NetEvent::PeerConnected`] to its
/// [`NetEvent::PeerDisconnected`]. Ids are never reused by a network, so a frame addressed
/// to a session that has ended (or been replaced by a new stream to the same peer) can be
/// recognised and dropped instead of reaching a protocol session that never expected it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub(crate) u64);

impl SessionId {
    /// An id from its number (one from [`SessionId::as_u64`]; any other names no session).
    pub fn from_u64(id: u64) -> Self {
        Self(id)
    }

    /// The id as a number (for logs and metrics).
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s{}", self.0)
    }
}

/// What a peer did wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Misbehaviour {
    /// It announced a frame larger than our cap.
    FrameTooLarge {
        /// The announced length.
        len: u64,
        /// Our cap.
        max: usize,
    },
    /// It sent a length prefix that is not a minimal 32-bit varint.
    MalformedLengthPrefix,
    /// It kept replacing its sync stream (more than 16 streams a minute).
    StreamChurn,
    /// The sync engine reported a protocol violation.
    Engine(String),
}

impl fmt::Display for Misbehaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FrameTooLarge { len, max } => {
                write!(f, "frame of {len} bytes exceeds the {max} byte cap")
            }
            Self::MalformedLengthPrefix => f.write_str("malformed frame length prefix"),
            Self::StreamChurn => f.write_str("opened too many sync streams"),
            Self::Engine(reason) => write!(f, "sync protocol violation: {reason}"),
        }
    }
}

/// The transport a connection runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TransportKind {
    /// TCP (with the team key's private-network layer when one is set).
    Tcp,
    /// QUIC (only without a team key).
    Quic,
    /// libp2p's in-process memory transport.
    Memory,
    /// Anything else.
    Other,
}

impl TransportKind {
    /// Classifies a remote address.
    pub fn of(addr: &Multiaddr) -> Self {
        let mut kind = Self::Other;
        for proto in addr.iter() {
            match proto {
                Protocol::QuicV1 | Protocol::Quic => return Self::Quic,
                Protocol::Memory(_) => return Self::Memory,
                Protocol::Tcp(_) => kind = Self::Tcp,
                _ => {}
            }
        }
        kind
    }

    /// A short lowercase name: `tcp`, `quic`, `memory` or `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Quic => "quic",
            Self::Memory => "memory",
            Self::Other => "other",
        }
    }
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Health of one connected peer, as returned by [`crate::NetHandle::peers`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer.
    pub peer: PeerId,
    /// Remote addresses of its open connections.
    pub addrs: Vec<Multiaddr>,
    /// Transport of its first connection.
    pub transport: TransportKind,
    /// Number of open connections (1 once duplicates are resolved).
    pub connections: usize,
    /// Whether a sync stream is open.
    pub sync_stream: bool,
    /// The open sync stream's session, if any.
    pub session: Option<SessionId>,
    /// Latest ping round-trip time.
    pub rtt: Option<Duration>,
    /// Frame payload bytes received on the current sync stream.
    pub bytes_in: u64,
    /// Frame payload bytes written to the current sync stream.
    pub bytes_out: u64,
    /// Frames received on the current sync stream.
    pub frames_in: u64,
    /// Frames written to the current sync stream.
    pub frames_out: u64,
    /// When we last heard from it (a frame or a ping).
    pub last_seen: SystemTime,
    /// When its first current connection was established.
    pub connected_since: SystemTime,
}

/// What discovery found, from [`crate::NetHandle::discovery`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    /// mDNS is on.
    pub mdns: bool,
    /// Peers mDNS lists now (connected or not).
    pub discovered: usize,
    /// Addresses dialed as explicit peers (configured, added, the team's members').
    pub explicit: usize,
    /// Why the last dial of an explicit address failed, until a connection succeeds.
    pub explicit_failure: Option<String>,
    /// How long the network has been running.
    pub running_for: Duration,
}

/// What became of a gossip publish. Gossip is best-effort (the sync stream repairs
/// anything it misses), so "nobody to send to" is an outcome, not an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublishOutcome {
    /// Handed to at least one peer.
    Sent,
    /// No peer has subscribed to the team topic yet.
    NoPeers,
    /// The same bytes were published recently; message ids are content hashes.
    Duplicate,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_kind_of_addresses() {
        let tcp: Multiaddr = "/ip4/127.0.0.1/tcp/4001".parse().unwrap();
        let quic: Multiaddr = "/ip4/127.0.0.1/udp/4001/quic-v1".parse().unwrap();
        let mem: Multiaddr = "/memory/5".parse().unwrap();
        assert_eq!(TransportKind::of(&tcp), TransportKind::Tcp);
        assert_eq!(TransportKind::of(&quic), TransportKind::Quic);
        assert_eq!(TransportKind::of(&mem), TransportKind::Memory);
        assert_eq!(TransportKind::Quic.to_string(), "quic");
    }
}
