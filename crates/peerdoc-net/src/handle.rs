//! [`NetHandle`]: the cheap, cloneable side of the network that the caller keeps.

use std::collections::BTreeSet;
use std::fmt;

use bytes::Bytes;
use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};

use crate::{NetError, PeerInfo, PublishOutcome, SessionId, session::SessionTable};

/// A request to the event loop, with the channel its answer comes back on.
#[derive(Debug)]
pub(crate) enum Command {
    Publish {
        bytes: Bytes,
        reply: oneshot::Sender<Result<PublishOutcome, NetError>>,
    },
    Dial {
        addr: Multiaddr,
        reply: oneshot::Sender<Result<PeerId, NetError>>,
    },
    Disconnect {
        peer: PeerId,
        reply: oneshot::Sender<()>,
    },
    DisconnectAndBan {
        peer: PeerId,
        reason: String,
        reply: oneshot::Sender<()>,
    },
    Peers {
        reply: oneshot::Sender<Vec<PeerInfo>>,
    },
    ListenAddrs {
        reply: oneshot::Sender<Vec<Multiaddr>>,
    },
    AddPeer {
        addr: Multiaddr,
        reply: oneshot::Sender<bool>,
    },
    RemovePeer {
        addr: Multiaddr,
        reply: oneshot::Sender<bool>,
    },
    ExplicitPeers {
        reply: oneshot::Sender<Vec<Multiaddr>>,
    },
    Discovery {
        reply: oneshot::Sender<crate::Discovery>,
    },
    SetAllowlist {
        peers: BTreeSet<PeerId>,
        reply: oneshot::Sender<Result<(), NetError>>,
    },
    SetTeamKeys {
        current: [u8; 32],
        also_accept: Vec<[u8; 32]>,
        reply: oneshot::Sender<Result<(), NetError>>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// Longest engine-supplied ban reason we keep; reasons end up in logs and events.
const MAX_REASON_LEN: usize = 256;

/// Talks to a running [`crate::NetEventLoop`]. Clone it freely.
///
/// Every method except [`NetHandle::send_frame`] sends a command over a bounded channel
/// and waits for the loop's answer; they fail with [`NetError::EventLoopClosed`] once the
/// loop has stopped.
#[derive(Clone)]
pub struct NetHandle {
    pub(crate) local_peer_id: PeerId,
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) sessions: SessionTable,
    pub(crate) max_frame_size: usize,
}

impl fmt::Debug for NetHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetHandle")
            .field("local_peer_id", &self.local_peer_id)
            .finish_non_exhaustive()
    }
}

impl NetHandle {
    /// This node's peer id.
    pub fn local_peer_id(&self) -> PeerId {
        self.local_peer_id
    }

    /// Queues one frame on `peer`'s sync stream `session` (from
    /// [`crate::NetEvent::PeerConnected`]). Never waits: frames are delivered in order,
    /// and when the peer's bounded queue is full this returns
    /// [`NetError::PeerQueueFull`] so that the caller decides what to drop or retry.
    ///
    /// A frame for a session that has ended is dropped with
    /// [`NetError::StaleSession`] (a newer stream is open) or
    /// [`NetError::PeerNotConnected`] (none is): it is never sent on a replacement
    /// stream, whose remote protocol state would take it for a violation.
    pub fn send_frame(
        &self,
        peer: PeerId,
        session: SessionId,
        frame: Bytes,
    ) -> Result<(), NetError> {
        if frame.len() > self.max_frame_size {
            return Err(NetError::FrameTooLarge {
                len: frame.len(),
                max: self.max_frame_size,
            });
        }
        self.sessions.try_send(peer, session, frame)
    }

    /// Publishes an announcement on the team's gossip topic (best-effort).
    pub async fn publish(&self, bytes: Bytes) -> Result<PublishOutcome, NetError> {
        self.request(|reply| Command::Publish { bytes, reply })
            .await?
    }

    /// Dials an address once and waits for the outcome: the peer id once a connection
    /// is established (the sync stream follows as [`crate::NetEvent::PeerConnected`]),
    /// or [`NetError::Dial`] if it failed (unreachable, wrong team key, refused).
    /// Explicit peers from the config are redialed automatically instead.
    pub async fn dial(&self, addr: Multiaddr) -> Result<PeerId, NetError> {
        self.request(|reply| Command::Dial { addr, reply }).await?
    }

    /// Closes every connection to `peer` (and so its sync stream) without banning it:
    /// for the sync engine to call when it gave up on a session for a reason that is not
    /// the peer's fault (a backlog that overflowed, a `leave`). The peer may reconnect
    /// at once; explicit peers are redialed with backoff and mDNS peers when they are
    /// discovered again.
    pub async fn disconnect(&self, peer: PeerId) -> Result<(), NetError> {
        self.request(|reply| Command::Disconnect { peer, reply })
            .await
    }

    /// Disconnects `peer` and refuses its connections for the configured ban duration;
    /// for the sync engine to call when the peer violated the protocol.
    pub async fn disconnect_and_ban(
        &self,
        peer: PeerId,
        reason: impl Into<String>,
    ) -> Result<(), NetError> {
        let mut reason = reason.into();
        if reason.len() > MAX_REASON_LEN {
            let mut cut = MAX_REASON_LEN;
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            reason.truncate(cut);
        }
        self.request(|reply| Command::DisconnectAndBan {
            peer,
            reason,
            reply,
        })
        .await
    }

    /// Health of every connected peer.
    pub async fn peers(&self) -> Result<Vec<PeerInfo>, NetError> {
        self.request(|reply| Command::Peers { reply }).await
    }

    /// The addresses we listen on.
    pub async fn listen_addrs(&self) -> Result<Vec<Multiaddr>, NetError> {
        self.request(|reply| Command::ListenAddrs { reply }).await
    }

    /// Keeps dialing `addr` (`/ip4/…/tcp/…[/p2p/<id>]`) from now on, with backoff, like
    /// a configured peer: for devices added at run time. Returns false when it was
    /// already dialed or the list of addresses is full (256).
    pub async fn add_peer(&self, addr: Multiaddr) -> Result<bool, NetError> {
        self.request(|reply| Command::AddPeer { addr, reply }).await
    }

    /// Stops dialing `addr` (a configured or added peer); returns whether it was dialed.
    /// An open connection stays until it closes.
    pub async fn remove_peer(&self, addr: Multiaddr) -> Result<bool, NetError> {
        self.request(|reply| Command::RemovePeer { addr, reply })
            .await
    }

    /// The addresses dialed as explicit peers (configured and added).
    pub async fn explicit_peers(&self) -> Result<Vec<Multiaddr>, NetError> {
        self.request(|reply| Command::ExplicitPeers { reply }).await
    }

    /// What discovery found so far (for telling a person why nobody is connected).
    pub async fn discovery(&self) -> Result<crate::Discovery, NetError> {
        self.request(|reply| Command::Discovery { reply }).await
    }

    /// Replaces the allowlist: connections of peers no longer on it are closed at once
    /// and refused from now on; newly listed peers may connect. Only a network started
    /// with an allowlist has one to replace ([`NetError::InvalidConfig`] otherwise).
    pub async fn set_allowlist(&self, peers: BTreeSet<PeerId>) -> Result<(), NetError> {
        self.request(|reply| Command::SetAllowlist { peers, reply })
            .await?
    }

    /// Replaces the team key (the private-network pre-shared key) and accepts no other:
    /// `set_team_keys(key, vec![])`.
    pub async fn set_team_key(&self, key: [u8; 32]) -> Result<(), NetError> {
        self.set_team_keys(key, Vec::new()).await
    }

    /// Replaces the team keys: new outbound connections use `current`; inbound ones are
    /// accepted under `current` or any of `also_accept` (previous keys in their grace
    /// period, at most 8: [`NetError::InvalidConfig`] otherwise).
    ///
    /// If `current` changed, every current connection is closed and gossip moves to the
    /// new key's topic; if only `also_accept` changed, connections stay (also those made
    /// under a key that is no longer accepted). Only a network started with a team key
    /// can change it ([`NetError::InvalidConfig`] otherwise: a keyless transport cannot
    /// become keyed).
    pub async fn set_team_keys(
        &self,
        current: [u8; 32],
        also_accept: Vec<[u8; 32]>,
    ) -> Result<(), NetError> {
        self.request(|reply| Command::SetTeamKeys {
            current,
            also_accept,
            reply,
        })
        .await?
    }

    /// Closes every stream and connection and stops the event loop.
    pub async fn shutdown(&self) -> Result<(), NetError> {
        self.request(|reply| Command::Shutdown { reply }).await
    }

    async fn request<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, NetError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| NetError::EventLoopClosed)?;
        answer.await.map_err(|_| NetError::EventLoopClosed)
    }
}
