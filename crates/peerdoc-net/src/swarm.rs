//! The libp2p behaviour stack and transport, built from a [`NetConfig`].

use std::time::Duration;

use libp2p::{
    PeerId, StreamProtocol, Swarm, SwarmBuilder, allow_block_list, connection_limits,
    core::{ConnectedPoint, Endpoint, Transport as _, muxing::StreamMuxerBox, upgrade::Version},
    gossipsub, identify,
    identity::Keypair,
    mdns, noise, ping,
    swarm::{NetworkBehaviour, behaviour::toggle::Toggle},
    tcp, yamux,
};
use sha2::{Digest, Sha256};

use crate::{
    NetConfig, NetError,
    pnet::{self, Side, TeamKeys},
    sever::SeverSwitch,
};

/// The sync stream protocol: one long-lived, framed, in-order stream per peer.
pub const SYNC_PROTOCOL: StreamProtocol = StreamProtocol::new("/peerdoc/sync/1");

/// The identify protocol version we announce.
const IDENTIFY_VERSION: &str = "/peerdoc/id/1";

/// Room for gossipsub's own envelope (signature, public key, topic, sequence number)
/// on top of the caller's payload.
const GOSSIP_ENVELOPE: usize = 4 * 1024;

/// A handshake (pnet, noise, yamux) that has not finished by then fails: a peer with the
/// wrong team key reads garbage and might otherwise wait for bytes that never come.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Idle connections close after this; an open sync stream keeps a connection busy.
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);

/// Connections to one peer at once (simultaneous dials, a reconnect racing a close).
const MAX_CONNECTIONS_PER_PEER: u32 = 8;

#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    /// Caps on connections (`NetConfig::max_incoming_connections`), so a flood of idle
    /// sockets to the libp2p port cannot take every file descriptor.
    pub(crate) limits: connection_limits::Behaviour,
    /// Banned peers. First, so that a ban refuses a connection before anything else sees it.
    pub(crate) blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    /// Enrolled peers, when an allowlist is configured.
    pub(crate) allowed: Toggle<allow_block_list::Behaviour<allow_block_list::AllowedPeers>>,
    pub(crate) identify: identify::Behaviour,
    pub(crate) ping: ping::Behaviour,
    pub(crate) gossipsub: gossipsub::Behaviour,
    pub(crate) mdns: Toggle<mdns::tokio::Behaviour>,
    pub(crate) stream: libp2p_stream::Behaviour,
}

/// gossipsub settings for a mesh of 2–50 devices (see docs/networking.md).
pub(crate) fn gossipsub_config(max_payload: usize) -> Result<gossipsub::Config, NetError> {
    gossipsub::ConfigBuilder::default()
        .heartbeat_interval(Duration::from_secs(1))
        .mesh_n(4)
        .mesh_n_low(2)
        .mesh_n_high(8)
        .mesh_outbound_min(1)
        .gossip_lazy(4)
        .flood_publish(true)
        .max_transmit_size(max_payload + GOSSIP_ENVELOPE)
        .validation_mode(gossipsub::ValidationMode::Strict)
        .message_id_fn(|message: &gossipsub::Message| {
            gossipsub::MessageId::from(&Sha256::digest(&message.data)[..16])
        })
        .build()
        .map_err(|e| NetError::InvalidConfig(format!("gossipsub: {e}")))
}

fn build_behaviour(config: &NetConfig, keypair: &Keypair) -> Result<Behaviour, NetError> {
    let local_peer_id = keypair.public().to_peer_id();
    let allowed = config.allowlist.as_ref().map(|list| {
        let mut allowed = allow_block_list::Behaviour::<allow_block_list::AllowedPeers>::default();
        for peer in list {
            allowed.allow_peer(*peer);
        }
        allowed
    });
    let identify = identify::Behaviour::new(
        identify::Config::new(IDENTIFY_VERSION.to_owned(), keypair.public())
            .with_agent_version(format!("peerdoc-net/{}", env!("CARGO_PKG_VERSION"))),
    );
    let ping = ping::Behaviour::new(
        ping::Config::new()
            .with_interval(config.ping_interval)
            .with_timeout(config.ping_interval.saturating_mul(2)),
    );
    let gossipsub = gossipsub::Behaviour::new(
        gossipsub::MessageAuthenticity::Signed(keypair.clone()),
        gossipsub_config(config.max_gossip_size)?,
    )
    .map_err(|e| NetError::SwarmBuild(format!("gossipsub: {e}")))?;
    let mdns = if config.enable_mdns {
        let mdns_config = mdns::Config {
            ttl: config.mdns_ttl,
            query_interval: config.mdns_query_interval,
            enable_ipv6: false,
        };
        Some(
            mdns::tokio::Behaviour::new(mdns_config, local_peer_id)
                .map_err(|e| NetError::SwarmBuild(format!("mdns: {e}")))?,
        )
    } else {
        None
    };
    let incoming = config.max_incoming_connections.max(1);
    let limits = connection_limits::Behaviour::new(
        connection_limits::ConnectionLimits::default()
            .with_max_pending_incoming(Some((incoming / 8).max(16)))
            .with_max_established_incoming(Some(incoming))
            .with_max_established_per_peer(Some(MAX_CONNECTIONS_PER_PEER)),
    );
    Ok(Behaviour {
        limits,
        blocked: allow_block_list::Behaviour::default(),
        allowed: allowed.into(),
        identify,
        ping,
        gossipsub,
        mdns: mdns.into(),
        stream: libp2p_stream::Behaviour::new(),
    })
}

/// Builds the swarm: TCP behind the team key's private-network handshake
/// ([`crate::pnet`]) when a key is set, otherwise TCP and QUIC. Noise authenticates and
/// encrypts either way. Every TCP connection's muxer is registered with `sever`, so that
/// a dead one can be closed without a graceful flush (see `sever.rs`).
///
/// With a key, the transport reads the key set from `team_key` at every new connection
/// (dialing with the current key, accepting any key of the set), so
/// [`crate::NetHandle::set_team_keys`] can change it while the swarm runs.
pub(crate) fn build_swarm(
    config: &NetConfig,
    keypair: Keypair,
    team_key: Option<TeamKeySlot>,
    sever: SeverSwitch,
) -> Result<Swarm<Behaviour>, NetError> {
    let behaviour = build_behaviour(config, &keypair)?;
    let tcp_config = tcp::Config::default().nodelay(true);
    let swarm_config =
        |c: libp2p::swarm::Config| c.with_idle_connection_timeout(IDLE_CONNECTION_TIMEOUT);
    let build_err = |e: &dyn std::fmt::Display| NetError::SwarmBuild(e.to_string());
    let swarm = match team_key {
        Some(slot) => SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_other_transport(
                |key| -> Result<_, Box<dyn std::error::Error + Send + Sync>> {
                    let noise = noise::Config::new(key)?;
                    Ok(tcp::tokio::Transport::new(tcp_config)
                        .and_then(move |socket, endpoint| {
                            let keys = slot.read().unwrap_or_else(|p| p.into_inner()).clone();
                            // The side multistream-select will take: the dialer speaks first.
                            let side = match endpoint {
                                ConnectedPoint::Dialer {
                                    role_override: Endpoint::Dialer,
                                    ..
                                } => Side::Dialer,
                                _ => Side::Listener,
                            };
                            async move {
                                let nonce = pnet::random_nonce()?;
                                pnet::handshake(socket, side, &keys, nonce).await
                            }
                        })
                        .upgrade(Version::V1Lazy)
                        .authenticate(noise)
                        .multiplex(yamux::Config::default())
                        .timeout(HANDSHAKE_TIMEOUT)
                        .map(move |(peer, muxer), _| {
                            (peer, StreamMuxerBox::new(sever.wrap(peer, muxer)))
                        }))
                },
            )
            .map_err(|e| build_err(&e))?
            .with_behaviour(|_| behaviour)
            .map_err(|e| build_err(&e))?
            .with_swarm_config(swarm_config)
            .build(),
        None => SwarmBuilder::with_existing_identity(keypair)
            .with_tokio()
            .with_quic()
            .with_other_transport(
                |key| -> Result<_, Box<dyn std::error::Error + Send + Sync>> {
                    let noise = noise::Config::new(key)?;
                    Ok(tcp::tokio::Transport::new(tcp_config)
                        .upgrade(Version::V1Lazy)
                        .authenticate(noise)
                        .multiplex(yamux::Config::default())
                        .timeout(HANDSHAKE_TIMEOUT)
                        .map(move |(peer, muxer), _| {
                            (peer, StreamMuxerBox::new(sever.wrap(peer, muxer)))
                        }))
                },
            )
            .map_err(|e| build_err(&e))?
            .with_behaviour(|_| behaviour)
            .map_err(|e| build_err(&e))?
            .with_swarm_config(swarm_config)
            .build(),
    };
    Ok(swarm)
}

/// The team keys new connections use; replaced by `NetHandle::set_team_keys`.
pub(crate) type TeamKeySlot = std::sync::Arc<std::sync::RwLock<TeamKeys>>;

/// The key slot for a network started with `config`: `None` without a team key.
pub(crate) fn team_key_slot(config: &NetConfig) -> Result<Option<TeamKeySlot>, NetError> {
    config
        .team_key
        .map(|current| {
            let keys = TeamKeys::new(current, config.also_accept_keys.clone())?;
            Ok(std::sync::Arc::new(std::sync::RwLock::new(keys)))
        })
        .transpose()
}

/// Whether `local` is the side that dials on discovery, resolves duplicate connections
/// and opens the sync stream. Exactly one side of any pair answers yes.
pub(crate) fn is_leader(local: &PeerId, remote: &PeerId) -> bool {
    local < remote
}
