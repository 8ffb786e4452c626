//! The one error type of this crate.

use std::path::PathBuf;

use libp2p::{Multiaddr, PeerId};

/// Everything that can go wrong in the transport layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// The identity file exists but could not be read or written.
    #[error("identity file {path}: {source}")]
    IdentityIo {
        /// The identity file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The identity file exists but does not hold a protobuf-encoded Ed25519 keypair.
    /// We never regenerate silently: a new identity would orphan the device's sync state.
    #[error("identity file {path} is malformed: {reason}")]
    IdentityMalformed {
        /// The identity file.
        path: PathBuf,
        /// Why it was rejected.
        reason: String,
    },
    /// A configuration value is out of range or contradicts another one.
    #[error("invalid network configuration: {0}")]
    InvalidConfig(String),
    /// A QUIC listen or dial address was given while a team key is set; the private-network
    /// handshake only exists for TCP, so QUIC would bypass the team gate.
    #[error("QUIC address {0} cannot be used with a team key (pnet only protects TCP)")]
    QuicWithTeamKey(Multiaddr),
    /// Building the transport or a behaviour failed.
    #[error("building the libp2p swarm failed: {0}")]
    SwarmBuild(String),
    /// The swarm refused to listen on an address.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: Multiaddr,
        /// Why.
        reason: String,
    },
    /// The swarm refused to start a dial.
    #[error("cannot dial {addr}: {reason}")]
    Dial {
        /// The address.
        addr: Multiaddr,
        /// Why.
        reason: String,
    },
    /// The peer's outbound frame queue is full: the peer reads slower than we write.
    /// The caller should retry later rather than buffer without bound.
    #[error("outbound queue for peer {peer} is full")]
    PeerQueueFull {
        /// The slow peer.
        peer: PeerId,
    },
    /// There is no open sync stream to that peer.
    #[error("no sync stream to peer {peer}")]
    PeerNotConnected {
        /// The peer.
        peer: PeerId,
    },
    /// The frame was addressed to a sync session that has ended; a newer stream to the
    /// same peer is open. The frame was dropped: the new session's protocol state never
    /// expected it.
    #[error("sync session {session} with peer {peer} has ended; frame dropped")]
    StaleSession {
        /// The peer.
        peer: PeerId,
        /// The session the frame was meant for.
        session: crate::SessionId,
    },
    /// A frame is larger than the configured cap.
    #[error("frame of {len} bytes exceeds the {max} byte cap")]
    FrameTooLarge {
        /// Frame length.
        len: usize,
        /// Configured cap.
        max: usize,
    },
    /// A gossip message is larger than gossipsub's transmit cap.
    #[error("gossip message of {len} bytes exceeds the {max} byte cap")]
    GossipTooLarge {
        /// Message length.
        len: usize,
        /// Configured cap.
        max: usize,
    },
    /// gossipsub refused the message for another reason (signing, all peer queues full).
    #[error("gossip publish failed: {0}")]
    GossipPublish(String),
    /// The event loop has stopped (shut down, or the task was dropped).
    #[error("the network event loop is not running")]
    EventLoopClosed,
}
