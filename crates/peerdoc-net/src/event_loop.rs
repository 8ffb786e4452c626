//! [`NetEventLoop`]: the task that owns the swarm and every piece of connection state.
//!
//! Longer than our ~800-line rule: it is the one place that turns swarm events and
//! handle commands into actions, and splitting the match across files would hide the
//! order in which state changes. The decisions live elsewhere: whom to dial and when to
//! sever in `dial_policy.rs` (sans-IO), severing in `sever.rs`, the team gate in
//! `pnet.rs`, sessions in `session.rs`.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque},
    fmt,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use bytes::Bytes;
use futures::{FutureExt as _, StreamExt as _, future::BoxFuture, stream::FuturesUnordered};
use libp2p::{
    Multiaddr, PeerId, Stream, Swarm,
    gossipsub::{self, IdentTopic, PublishError},
    identify, mdns,
    multiaddr::Protocol,
    ping,
    swarm::{
        ConnectionId, DialError, ListenError, SwarmEvent,
        dial_opts::{DialOpts, PeerCondition},
    },
};
use libp2p_stream::OpenStreamError;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tokio::sync::{mpsc, oneshot};

use crate::{
    Misbehaviour, NetConfig, NetError, NetEvent, PeerInfo, PublishOutcome, SessionId,
    TransportKind,
    config::is_quic,
    dial_policy::{DialAction, DialPolicy, DialPolicyConfig},
    handle::Command,
    session::{PeerStats, Session, SessionEnd, SessionEnded, SessionTable},
    sever::SeverSwitch,
    swarm::{Behaviour, BehaviourEvent, SYNC_PROTOCOL, is_leader},
};

/// How often in a row the leader tries to open a sync stream before giving up on the
/// connection.
const MAX_STREAM_ATTEMPTS: u32 = 3;

/// Most sync streams a leader may open to us per [`INBOUND_STREAM_WINDOW`]. A correct
/// leader opens one per connection plus a few after failures; a peer that keeps
/// replacing its stream makes us tear down and restart sessions for nothing.
const MAX_INBOUND_STREAMS: u32 = 16;
const INBOUND_STREAM_WINDOW: Duration = Duration::from_secs(60);

/// Most `NetHandle::dial` calls waiting for an outcome at once.
const MAX_PENDING_DIALS: usize = 256;

/// Shortest sleep of the loop when the policy says something is due already: guards
/// against spinning on a deadline that the policy cannot act on yet.
const MIN_WAKEUP: Duration = Duration::from_millis(5);

/// How long to wait when nothing is scheduled.
const IDLE_WAKEUP: Duration = Duration::from_secs(3600);

/// One open connection to a peer.
#[derive(Debug, Clone)]
struct Connection {
    id: ConnectionId,
    /// Whether we dialed it.
    dialed_by_us: bool,
    remote_addr: Multiaddr,
}

/// The running sync stream of a peer.
#[derive(Debug)]
struct SessionSlot {
    generation: u64,
    stats: Arc<PeerStats>,
    /// Dropping this tells the session task to stop.
    _stop: oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<()>,
}

/// A peer with at least one open connection.
#[derive(Debug)]
struct ConnectedPeer {
    connections: Vec<Connection>,
    connected_since: SystemTime,
    rtt: Option<Duration>,
    last_ping: Option<SystemTime>,
    session: Option<SessionSlot>,
    stream_attempts: u32,
    /// Numbers the leader's stream opens; an open that completes after a newer one was
    /// started is stale (it may ride a connection that has since closed).
    open_seq: u64,
    /// Start of the current window for counting sync streams this peer opened to us,
    /// and the count.
    inbound_window: (Instant, u32),
    /// The session's `frames_in` when last looked at: a frame is a sign of life.
    frames_seen: u64,
}

/// Who asked for a dial the policy started.
#[derive(Debug, Clone, Copy)]
enum DialOrigin {
    Peer(PeerId),
    Explicit(usize),
}

/// The outcome of one attempt by the leader to open a sync stream.
struct StreamOpened {
    peer: PeerId,
    seq: u64,
    result: Result<Stream, OpenStreamError>,
}

/// Whether the loop keeps running after a command.
enum Flow {
    Continue,
    Stop(oneshot::Sender<()>),
}

/// The half of the network that does the work: owns the swarm, every connection and
/// every stream. Spawn [`NetEventLoop::run`] on a tokio runtime; it returns after
/// [`crate::NetHandle::shutdown`] or once every handle is dropped.
pub struct NetEventLoop {
    swarm: Swarm<Behaviour>,
    config: NetConfig,
    local: PeerId,
    topic: IdentTopic,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<NetEvent>,
    /// Events produced by the loop itself, waiting for room in `events`. The loop never
    /// blocks on a slow caller: it would stop answering pings and commands.
    backlog: VecDeque<NetEvent>,
    incoming: libp2p_stream::IncomingStreams,
    control: libp2p_stream::Control,
    opening: FuturesUnordered<BoxFuture<'static, StreamOpened>>,
    /// Sync streams from a leader that arrived before its `ConnectionEstablished` event
    /// did (the two travel on different channels); at most one per peer.
    early_inbound: HashMap<PeerId, Stream>,
    ended_tx: mpsc::Sender<SessionEnded>,
    ended_rx: mpsc::Receiver<SessionEnded>,
    sessions: SessionTable,
    /// Sessions told to stop whose tasks may still be emitting their last events; a new
    /// session to the same peer waits for them, keeping `PeerDisconnected` before the
    /// next `PeerConnected`.
    retiring: HashMap<PeerId, (u64, tokio::task::JoinHandle<()>)>,
    peers: HashMap<PeerId, ConnectedPeer>,
    /// Whom to dial when, dead links, bans: the sans-IO policy, fed with `now_ms`.
    policy: DialPolicy,
    /// The origin of `now_ms`.
    started: Instant,
    /// Why the last dial of an explicit address failed, until a connection succeeds
    /// (for telling a person, [`crate::Discovery::explicit_failure`]).
    explicit_failure: Option<String>,
    /// Dials the policy started, by connection, to report their outcome.
    dialing: HashMap<ConnectionId, DialOrigin>,
    /// Closes a dead peer's connections without waiting for a flush.
    sever: SeverSwitch,
    /// Connections of severed peers that libp2p has not reported closed yet.
    severed: HashSet<ConnectionId>,
    /// `NetHandle::dial` calls waiting for their connection's outcome.
    pending_dials: HashMap<ConnectionId, (Multiaddr, oneshot::Sender<Result<PeerId, NetError>>)>,
    rng: ChaCha8Rng,
    next_generation: u64,
    /// The key the transport reads at every new connection, when keyed.
    team_key_slot: Option<crate::swarm::TeamKeySlot>,
    /// Remote addresses whose failed incoming connections were logged at INFO.
    refused_addrs: std::collections::HashSet<std::net::IpAddr>,
    /// When the connection cap was last logged (ms), to say it at most once a minute.
    limit_warned_ms: Option<u64>,
    /// The sync budget (`net.max_rate`), shared by every session.
    budget: Option<Arc<crate::rate::Budget>>,
}

impl fmt::Debug for NetEventLoop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetEventLoop")
            .field("local", &self.local)
            .field("topic", &self.topic.to_string())
            .field("peers", &self.peers.len())
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// Builds the parts of a network node.
#[derive(Debug)]
pub struct Network;

impl Network {
    /// Validates `config`, builds the swarm, starts listening and dialing configured
    /// peers, and returns the handle, the event stream and the loop to spawn:
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), peerdoc_net::NetError> {
    /// use peerdoc_net::{NetConfig, Network};
    /// let keypair = libp2p::identity::Keypair::generate_ed25519();
    /// let (handle, mut events, event_loop) = Network::new(NetConfig::loopback(), keypair)?;
    /// tokio::spawn(event_loop.run());
    /// while let Some(event) = events.recv().await {
    ///     println!("{event:?}");
    /// }
    /// # drop(handle);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// Must be called within a tokio runtime (mDNS and QUIC register with it).
    #[allow(clippy::new_ret_no_self)]
    pub fn new(
        config: NetConfig,
        keypair: libp2p::identity::Keypair,
    ) -> Result<(crate::NetHandle, mpsc::Receiver<NetEvent>, NetEventLoop), NetError> {
        config.validate()?;
        let local = keypair.public().to_peer_id();
        let seed = config.jitter_seed.unwrap_or_else(|| {
            let nanos = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let id_bytes = local.to_bytes();
            id_bytes
                .iter()
                .rev()
                .take(8)
                .fold(u64::from(nanos), |acc, b| {
                    acc.rotate_left(8) ^ u64::from(*b)
                })
        });
        let sever = SeverSwitch::default();
        let team_key_slot = crate::swarm::team_key_slot(&config)?;
        let mut swarm =
            crate::swarm::build_swarm(&config, keypair, team_key_slot.clone(), sever.clone())?;
        let topic = IdentTopic::new(config.gossip_topic());
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&topic)
            .map_err(|e| NetError::SwarmBuild(format!("gossipsub subscribe: {e}")))?;
        let mut control = swarm.behaviour().stream.new_control();
        let incoming = control
            .accept(SYNC_PROTOCOL)
            .map_err(|e| NetError::SwarmBuild(e.to_string()))?;
        for addr in &config.listen_addrs {
            swarm
                .listen_on(addr.clone())
                .map_err(|e| NetError::Listen {
                    addr: addr.clone(),
                    reason: e.to_string(),
                })?;
        }
        let policy = DialPolicy::new(
            local,
            DialPolicyConfig::from_net_config(&config),
            config
                .peers
                .iter()
                .map(|addr| (addr.clone(), peer_id_of(addr))),
            0,
        );
        let (command_tx, commands) = mpsc::channel(config.command_queue_len);
        let (events, events_rx) = mpsc::channel(config.event_queue_len);
        let (ended_tx, ended_rx) = mpsc::channel(64);
        let sessions = SessionTable::default();
        let handle = crate::NetHandle {
            local_peer_id: local,
            commands: command_tx,
            sessions: sessions.clone(),
            max_frame_size: config.max_frame_size,
        };
        tracing::info!(peer = %local, topic = %topic, mdns = config.enable_mdns, team_key = config.team_key.is_some(), "network configured");
        let event_loop = NetEventLoop {
            swarm,
            local,
            topic,
            commands,
            events,
            backlog: VecDeque::new(),
            incoming,
            control,
            opening: FuturesUnordered::new(),
            early_inbound: HashMap::new(),
            ended_tx,
            ended_rx,
            sessions,
            retiring: HashMap::new(),
            peers: HashMap::new(),
            policy,
            started: Instant::now(),
            explicit_failure: None,
            dialing: HashMap::new(),
            sever,
            severed: HashSet::new(),
            pending_dials: HashMap::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            next_generation: 0,
            team_key_slot,
            refused_addrs: std::collections::HashSet::new(),
            limit_warned_ms: None,
            budget: config
                .max_rate
                .map(|rate| Arc::new(crate::rate::Budget::new(rate))),
            config,
        };
        Ok((handle, events_rx, event_loop))
    }
}

/// Addresses whose refused connections were logged at INFO (once each).
const MAX_REFUSED_ADDRS: usize = 1_024;

/// An error and its sources, joined: libp2p's transport errors hide the useful part
/// (a wrong team key, a refused connection) a few sources down.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let part = inner.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = inner.source();
    }
    text
}

fn peer_id_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| match p {
        Protocol::P2p(peer) => Some(peer),
        _ => None,
    })
}

impl NetEventLoop {
    /// Runs until shutdown.
    pub async fn run(mut self) {
        let shutdown_reply = loop {
            let deadline = tokio::time::Instant::from_std(self.next_deadline());
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm_event(event),
                command = self.commands.recv() => match command {
                    Some(command) => {
                        if let Flow::Stop(reply) = self.on_command(command) {
                            break Some(reply);
                        }
                    }
                    None => break None,
                },
                Some((peer, stream)) = self.incoming.next() => self.on_inbound_stream(peer, stream),
                Some(opened) = self.opening.next(), if !self.opening.is_empty() => {
                    self.on_stream_opened(opened);
                }
                Some(ended) = self.ended_rx.recv() => self.on_session_ended(ended),
                // An owned permit, so that the handlers below may borrow `self` mutably.
                permit = self.events.clone().reserve_owned(), if !self.backlog.is_empty() => match permit {
                    Ok(permit) => {
                        if let Some(event) = self.backlog.pop_front() {
                            permit.send(event);
                        }
                    }
                    // The caller dropped the receiver; nobody is listening any more.
                    Err(_) => self.backlog.clear(),
                },
                () = tokio::time::sleep_until(deadline) => self.on_timers(),
            }
        };
        tracing::info!(peer = %self.local, "network shutting down");
        self.sessions.clear();
        let peers: Vec<PeerId> = self.peers.keys().copied().collect();
        for peer in peers {
            let _ = self.swarm.disconnect_peer_id(peer);
        }
        // Dropping each slot's stop sender ends its session task.
        self.peers.clear();
        if let Some(reply) = shutdown_reply {
            let _ = reply.send(());
        }
    }

    fn push_event(&mut self, event: NetEvent) {
        let cap = self.config.event_queue_len;
        if self.backlog.len() >= cap {
            if matches!(event, NetEvent::Gossip { .. }) {
                tracing::debug!("event backlog full; dropping gossip");
                return;
            }
            if self.backlog.len() >= cap.saturating_mul(4) {
                tracing::warn!(event = ?event, "event backlog full; dropping event");
                return;
            }
        }
        self.backlog.push_back(event);
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn next_deadline(&self) -> Instant {
        let earliest = Instant::now() + MIN_WAKEUP;
        match self.policy.next_wakeup_ms() {
            Some(ms) => (self.started + Duration::from_millis(ms)).max(earliest),
            None => Instant::now() + IDLE_WAKEUP,
        }
    }

    fn on_timers(&mut self) {
        self.drive_policy();
    }

    /// Feeds the policy the signs of life it cannot see (frames), then does what it says.
    fn drive_policy(&mut self) {
        let now = self.now_ms();
        for (peer, entry) in &mut self.peers {
            let Some(slot) = &entry.session else {
                continue;
            };
            let frames = slot
                .stats
                .frames_in
                .load(std::sync::atomic::Ordering::Relaxed);
            if frames != entry.frames_seen {
                entry.frames_seen = frames;
                self.policy.heard_from(peer, now);
            }
        }
        for action in self.policy.poll(now) {
            match action {
                DialAction::DialPeer { peer, addrs } => self.dial_peer(peer, addrs, now),
                DialAction::DialExplicit { index, addr, peer } => {
                    self.dial_explicit(index, addr, peer, now);
                }
                DialAction::Sever { peer } => {
                    tracing::info!(
                        peer = %peer,
                        silent_for_ms = self.config.ping_interval.as_millis() * 2,
                        "no pong or frame from peer; severing its connections"
                    );
                    self.sever_peer(peer, now);
                }
                DialAction::Unban { peer } => {
                    self.swarm.behaviour_mut().blocked.unblock_peer(peer);
                    tracing::info!(peer = %peer, "ban expired");
                }
            }
        }
    }

    /// Closes every connection to `peer` now: its sync session ends at once (the engine
    /// sees `PeerDisconnected`; frames still queued for it are dropped and resent from
    /// heads on the next session), and its connections are severed rather than closed
    /// gracefully, which on a dead link would wait minutes for TCP to give up.
    fn sever_peer(&mut self, peer: PeerId, now: u64) {
        self.early_inbound.remove(&peer);
        if let Some(entry) = self.peers.remove(&peer) {
            for connection in &entry.connections {
                self.severed.insert(connection.id);
                // QUIC connections are not severable; a close ends them promptly.
                self.swarm.close_connection(connection.id);
            }
            if let Some(slot) = entry.session {
                self.retire(peer, slot);
            }
        }
        let severed = self.sever.sever(&peer);
        tracing::debug!(peer = %peer, severed, "severed connections");
        if !self.swarm.is_connected(&peer) {
            self.policy.disconnected(&peer, now, &mut self.rng);
        }
    }

    /// Whether the allowlist (if any) admits `peer`.
    fn allowed(&self, peer: &PeerId) -> bool {
        self.config
            .allowlist
            .as_ref()
            .is_none_or(|list| list.contains(peer))
    }

    // Every dial here allocates a new local port (`allocate_new_port`). libp2p's default
    // reuses the listen port, and two peers dialling each other at the same moment from
    // their listen ports then make one TCP simultaneous open in which both act as noise
    // initiators: both handshakes fail ("input error"). Port reuse only helps NAT hole
    // punching, which peerdoc does not do.
    fn dial_peer(&mut self, peer: PeerId, addrs: Vec<Multiaddr>, now: u64) {
        // The allowlist may have changed since the peer was found (`set_allowlist`).
        if !self.allowed(&peer) {
            self.policy.forget(&peer);
            return;
        }
        tracing::debug!(peer = %peer, "dialing");
        // mDNS and identify add the addresses they know of the peer.
        let opts = DialOpts::peer_id(peer)
            .addresses(addrs)
            .extend_addresses_through_behaviour()
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .allocate_new_port()
            .build();
        let connection = opts.connection_id();
        match self.swarm.dial(opts) {
            Ok(()) => {
                self.dialing.insert(connection, DialOrigin::Peer(peer));
            }
            Err(DialError::DialPeerConditionFalse(_)) => {
                self.policy.dial_skipped(&peer, now, &mut self.rng);
            }
            Err(e) => {
                tracing::debug!(peer = %peer, error = %e, "cannot dial peer");
                self.policy.dial_failed(&peer, now, &mut self.rng);
            }
        }
    }

    fn dial_explicit(&mut self, index: usize, addr: Multiaddr, peer: Option<PeerId>, now: u64) {
        let opts = match peer {
            Some(peer) => DialOpts::peer_id(peer)
                .addresses(vec![addr.clone()])
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .allocate_new_port()
                .build(),
            None => DialOpts::unknown_peer_id()
                .address(addr.clone())
                .allocate_new_port()
                .build(),
        };
        let connection = opts.connection_id();
        match self.swarm.dial(opts) {
            Ok(()) => {
                self.dialing.insert(connection, DialOrigin::Explicit(index));
            }
            // Already connected or being dialed by someone else (discovery, the peer
            // itself); a disconnect brings us back here.
            Err(DialError::DialPeerConditionFalse(_)) => {
                self.policy.explicit_dial_skipped(index, now, &mut self.rng);
            }
            Err(e) => {
                tracing::debug!(addr = %addr, error = %e, "cannot dial explicit peer");
                self.policy.explicit_dial_failed(index, now, &mut self.rng);
                // Refused before any packet (our allowlist, a ban): say so like any
                // failed dial, so that status can tell why the peer is not connected.
                self.push_event(NetEvent::DialFailed {
                    peer,
                    error: error_chain(&e),
                });
            }
        }
    }

    fn on_swarm_event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(addr = %address, "listening");
                self.push_event(NetEvent::Listening { addr: address });
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => self.on_connection_established(
                peer_id,
                connection_id,
                endpoint.is_dialer(),
                endpoint.get_remote_address().clone(),
            ),
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                cause,
                ..
            } => {
                tracing::debug!(peer = %peer_id, cause = ?cause, "connection closed");
                self.on_connection_closed(peer_id, connection_id, num_established);
            }
            SwarmEvent::OutgoingConnectionError {
                connection_id,
                peer_id,
                error,
            } => self.on_dial_failure(connection_id, peer_id, &error),
            SwarmEvent::IncomingConnectionError {
                peer_id,
                error,
                send_back_addr,
                ..
            } => {
                let exceeded = match &error {
                    ListenError::Denied { cause } => cause
                        .downcast_ref::<libp2p::connection_limits::Exceeded>()
                        .map(|e| (e.limit(), e.to_string())),
                    _ => None,
                };
                if let Some((limit, what)) = exceeded {
                    let now = self.now_ms();
                    if self
                        .limit_warned_ms
                        .is_none_or(|at| now.saturating_sub(at) >= 60_000)
                    {
                        self.limit_warned_ms = Some(now);
                        tracing::warn!(
                            limit,
                            %what,
                            addr = %send_back_addr,
                            "refusing connections: as many are open to the peer port as it takes \
                             (net.max_incoming_connections); said at most once a minute"
                        );
                    }
                } else if let (Some(peer), ListenError::Denied { .. }) = (peer_id, &error) {
                    tracing::debug!(peer = %peer, addr = %send_back_addr, "refused a connection");
                    self.push_event(NetEvent::ConnectionDenied { peer });
                } else {
                    let reason = error_chain(&error);
                    let ip = send_back_addr.iter().find_map(|p| match p {
                        libp2p::multiaddr::Protocol::Ip4(ip) => Some(std::net::IpAddr::V4(ip)),
                        libp2p::multiaddr::Protocol::Ip6(ip) => Some(std::net::IpAddr::V6(ip)),
                        _ => None,
                    });
                    // Once per address at INFO (a wrong team key says so in words), then
                    // at DEBUG: a stranger that keeps trying must not flood the log.
                    let first = ip.is_some_and(|ip| {
                        self.refused_addrs.len() < MAX_REFUSED_ADDRS
                            && self.refused_addrs.insert(ip)
                    });
                    if first {
                        tracing::info!(addr = %send_back_addr, reason = %reason, "refused an incoming connection");
                    } else {
                        tracing::debug!(addr = %send_back_addr, reason = %reason, "incoming connection failed");
                    }
                }
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour_event(event),
            _ => {}
        }
    }

    fn on_connection_established(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        dialed_by_us: bool,
        remote_addr: Multiaddr,
    ) {
        tracing::debug!(peer = %peer, addr = %remote_addr, dialed_by_us, "connection established");
        self.explicit_failure = None;
        if let Some((_, reply)) = self.pending_dials.remove(&id) {
            let _ = reply.send(Ok(peer));
        }
        let explicit = match self.dialing.remove(&id) {
            Some(DialOrigin::Explicit(index)) => Some(index),
            _ => None,
        };
        let now = self.now_ms();
        self.policy.connected(
            peer,
            dialed_by_us.then(|| remote_addr.clone()),
            explicit,
            now,
        );
        let entry = self.peers.entry(peer).or_insert_with(|| ConnectedPeer {
            connections: Vec::new(),
            connected_since: SystemTime::now(),
            rtt: None,
            last_ping: None,
            session: None,
            stream_attempts: 0,
            open_seq: 0,
            inbound_window: (Instant::now(), 0),
            frames_seen: 0,
        });
        entry.connections.push(Connection {
            id,
            dialed_by_us,
            remote_addr,
        });
        let connections = entry.connections.len();
        if !is_leader(&self.local, &peer) {
            // The other side opens the stream and settles duplicates.
            if let Some(stream) = self.early_inbound.remove(&peer) {
                self.start_session(peer, stream);
            }
            return;
        }
        // Our own count, not libp2p's: connections of a severed peer may not have been
        // reported closed yet, and they are no longer ours to dedupe.
        if connections > 1 {
            self.close_duplicates(peer);
        } else {
            self.open_stream(peer);
        }
    }

    /// Keeps one connection per peer: the one we (the leader) dialed, else the oldest.
    /// Only the leader decides, so the two sides can never close different connections.
    fn close_duplicates(&mut self, peer: PeerId) {
        let Some(entry) = self.peers.get(&peer) else {
            return;
        };
        let mut ranked: Vec<&Connection> = entry.connections.iter().collect();
        ranked.sort_by_key(|c| (!c.dialed_by_us, c.id));
        let losers: Vec<ConnectionId> = ranked.iter().skip(1).map(|c| c.id).collect();
        for id in losers {
            tracing::debug!(peer = %peer, connection = ?id, "closing duplicate connection");
            self.swarm.close_connection(id);
        }
    }

    fn open_stream(&mut self, peer: PeerId) {
        // libp2p-stream dials a peer it is not connected to; reconnecting is our
        // decision (leader rule, bans, backoff), never a side effect of a retry.
        if !self.swarm.is_connected(&peer) {
            return;
        }
        let Some(entry) = self.peers.get_mut(&peer) else {
            return;
        };
        entry.stream_attempts += 1;
        entry.open_seq += 1;
        let seq = entry.open_seq;
        let mut control = self.control.clone();
        self.opening.push(
            async move {
                let result = control.open_stream(peer, SYNC_PROTOCOL).await;
                StreamOpened { peer, seq, result }
            }
            .boxed(),
        );
    }

    /// Replaces the leader's sync stream after one of several connections closed: the
    /// stream may have been riding it, and a stream on a closed connection is not
    /// reliably woken, so its reader could wait forever.
    fn restart_stream(&mut self, peer: PeerId) {
        let Some(entry) = self.peers.get_mut(&peer) else {
            return;
        };
        entry.stream_attempts = 0;
        if let Some(slot) = entry.session.take() {
            self.retire(peer, slot);
        }
        self.open_stream(peer);
    }

    fn on_stream_opened(&mut self, opened: StreamOpened) {
        let StreamOpened { peer, seq, result } = opened;
        let current = self.peers.get(&peer).is_some_and(|p| p.open_seq == seq);
        if !current || self.policy.is_banned(&peer) {
            return;
        }
        match result {
            Ok(stream) => self.start_session(peer, stream),
            Err(OpenStreamError::UnsupportedProtocol(_)) => self.drop_foreign(peer),
            Err(e) => {
                tracing::debug!(peer = %peer, error = %e, "opening the sync stream failed");
                self.retry_stream_or_disconnect(peer);
            }
        }
    }

    fn retry_stream_or_disconnect(&mut self, peer: PeerId) {
        let attempts = self
            .peers
            .get(&peer)
            .map_or(u32::MAX, |p| p.stream_attempts);
        if attempts < MAX_STREAM_ATTEMPTS {
            self.open_stream(peer);
        } else {
            tracing::debug!(peer = %peer, "no usable sync stream; disconnecting");
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    fn on_inbound_stream(&mut self, peer: PeerId, stream: Stream) {
        if is_leader(&self.local, &peer) {
            // We open the stream to this peer; a second one would give the engine two
            // channels to the same peer.
            tracing::debug!(peer = %peer, "ignoring a sync stream opened by the follower");
            return;
        }
        if self.policy.is_banned(&peer) {
            return;
        }
        let Some(entry) = self.peers.get_mut(&peer) else {
            if self.swarm.is_connected(&peer) {
                self.early_inbound.insert(peer, stream);
            }
            return;
        };
        let now = Instant::now();
        let (since, count) = &mut entry.inbound_window;
        if now.duration_since(*since) > INBOUND_STREAM_WINDOW {
            *since = now;
            *count = 0;
        }
        *count += 1;
        if *count > MAX_INBOUND_STREAMS {
            self.ban(peer, Misbehaviour::StreamChurn);
            return;
        }
        self.start_session(peer, stream);
    }

    fn start_session(&mut self, peer: PeerId, stream: Stream) {
        let Some(entry) = self.peers.get_mut(&peer) else {
            return;
        };
        let previous = entry
            .session
            .take()
            .map(|slot| slot.handle)
            .or_else(|| self.retiring.remove(&peer).map(|(_, handle)| handle));
        let generation = self.next_generation;
        self.next_generation += 1;
        let (queue_tx, queue_rx) = mpsc::channel(self.config.peer_queue_len);
        let (stop_tx, stop_rx) = oneshot::channel();
        let stats = Arc::new(PeerStats::default());
        let addr = entry
            .connections
            .first()
            .map(|c| c.remote_addr.clone())
            .unwrap_or_else(Multiaddr::empty);
        let session = Session {
            peer,
            generation,
            transport: TransportKind::of(&addr),
            addr,
            stream,
            outbound: queue_rx,
            events: self.events.clone(),
            ended: self.ended_tx.clone(),
            stats: stats.clone(),
            stop: stop_rx,
            previous,
            max_frame_size: self.config.max_frame_size,
            budget: self.budget.clone(),
        };
        self.sessions.insert(peer, generation, queue_tx);
        let handle = tokio::spawn(session.run());
        entry.session = Some(SessionSlot {
            generation,
            stats,
            _stop: stop_tx,
            handle,
        });
    }

    fn on_session_ended(&mut self, ended: SessionEnded) {
        let SessionEnded {
            peer,
            generation,
            end,
        } = ended;
        self.sessions.remove_generation(&peer, generation);
        if self
            .retiring
            .get(&peer)
            .is_some_and(|(retired, _)| *retired == generation)
        {
            self.retiring.remove(&peer);
        }
        let current = match self.peers.get_mut(&peer) {
            Some(entry)
                if entry
                    .session
                    .as_ref()
                    .is_some_and(|s| s.generation == generation) =>
            {
                entry.session = None;
                true
            }
            _ => false,
        };
        match end {
            SessionEnd::Misbehaved(reason) => self.ban(peer, reason),
            SessionEnd::Closed(reason) if current => {
                tracing::debug!(peer = %peer, reason = %reason, "sync stream ended");
                if is_leader(&self.local, &peer) {
                    self.retry_stream_or_disconnect(peer);
                }
            }
            SessionEnd::Closed(_) | SessionEnd::Stopped => {}
        }
    }

    fn ban(&mut self, peer: PeerId, reason: Misbehaviour) {
        tracing::warn!(peer = %peer, reason = %reason, "peer misbehaved; disconnecting and banning");
        self.sessions.remove(&peer);
        if let Some(slot) = self.peers.get_mut(&peer).and_then(|e| e.session.take()) {
            self.retire(peer, slot);
        }
        self.swarm.behaviour_mut().blocked.block_peer(peer);
        let _ = self.swarm.disconnect_peer_id(peer);
        let now = self.now_ms();
        self.policy.ban(peer, now);
        self.push_event(NetEvent::PeerMisbehaved { peer, reason });
    }

    /// Stops a session (dropping its stop sender) and remembers its task until it ends.
    fn retire(&mut self, peer: PeerId, slot: SessionSlot) {
        let SessionSlot {
            generation, handle, ..
        } = slot;
        self.sessions.remove_generation(&peer, generation);
        self.retiring.insert(peer, (generation, handle));
    }

    fn drop_foreign(&mut self, peer: PeerId) {
        tracing::debug!(peer = %peer, "peer does not speak the sync protocol; disconnecting");
        let now = self.now_ms();
        self.policy.foreign(peer, now);
        let _ = self.swarm.disconnect_peer_id(peer);
    }

    fn on_connection_closed(&mut self, peer: PeerId, id: ConnectionId, remaining: u32) {
        let was_severed = self.severed.remove(&id);
        self.dialing.remove(&id);
        if let Some(entry) = self.peers.get_mut(&peer) {
            entry.connections.retain(|c| c.id != id);
        }
        if remaining > 0 {
            // A severed connection's session was already ended; the ones left are new.
            if !was_severed && is_leader(&self.local, &peer) {
                self.restart_stream(peer);
            }
            return;
        }
        self.early_inbound.remove(&peer);
        let now = self.now_ms();
        self.policy.disconnected(&peer, now, &mut self.rng);
        if let Some(slot) = self.peers.remove(&peer).and_then(|e| e.session) {
            self.retire(peer, slot);
        }
    }

    fn on_dial_failure(&mut self, id: ConnectionId, peer: Option<PeerId>, error: &DialError) {
        tracing::debug!(peer = ?peer, error = %error_chain(error), "dial failed");
        let now = self.now_ms();
        match self.dialing.remove(&id) {
            Some(DialOrigin::Peer(peer)) => self.policy.dial_failed(&peer, now, &mut self.rng),
            Some(DialOrigin::Explicit(index)) => {
                self.policy.explicit_dial_failed(index, now, &mut self.rng);
                self.explicit_failure = Some(error_chain(error));
            }
            None => {}
        }
        if let Some((addr, reply)) = self.pending_dials.remove(&id) {
            let _ = reply.send(Err(NetError::Dial {
                addr,
                reason: error.to_string(),
            }));
        }
        self.push_event(NetEvent::DialFailed {
            peer,
            error: error_chain(error),
        });
    }

    fn on_behaviour_event(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Identify(identify::Event::Received { peer_id, info, .. })
                if !info.protocols.contains(&SYNC_PROTOCOL) =>
            {
                self.drop_foreign(peer_id);
            }
            BehaviourEvent::Ping(ping::Event {
                peer,
                connection,
                result,
            }) => match result {
                Ok(rtt) => {
                    if let Some(entry) = self.peers.get_mut(&peer) {
                        entry.rtt = Some(rtt);
                        entry.last_ping = Some(SystemTime::now());
                    }
                    let now = self.now_ms();
                    self.policy.heard_from(&peer, now);
                }
                // A peer without ping is judged by identify, not by liveness.
                Err(ping::Failure::Unsupported) => {
                    tracing::debug!(peer = %peer, "peer does not support ping");
                    self.policy.liveness_exempt(&peer);
                }
                // A timeout, but also a ping stream whose negotiation timed out: on a
                // link that went dead (a device out of Wi-Fi range) the latter is what
                // we get. The peer's only connection: sever the peer (a graceful close
                // would wait minutes on a dead link). One of several (a duplicate being
                // closed): close just that one.
                Err(e) => {
                    let only = self.peers.get(&peer).is_some_and(|entry| {
                        entry.connections.len() == 1 && entry.connections[0].id == connection
                    });
                    if only && self.policy.ping_failed(&peer) {
                        tracing::info!(peer = %peer, error = %e, "ping failed; severing the connection");
                        let now = self.now_ms();
                        self.sever_peer(peer, now);
                    } else {
                        tracing::debug!(peer = %peer, error = %e, "ping failed; closing connection");
                        self.swarm.close_connection(connection);
                    }
                }
            },
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => self.on_discovered(found),
            BehaviourEvent::Mdns(mdns::Event::Expired(gone)) => {
                let now = self.now_ms();
                let peers: HashSet<PeerId> = gone.into_iter().map(|(peer, _)| peer).collect();
                for peer in peers {
                    // Expired only once no address of it is left.
                    let still_known = self
                        .swarm
                        .behaviour()
                        .mdns
                        .as_ref()
                        .is_some_and(|m| m.discovered_nodes().any(|p| *p == peer));
                    if !still_known {
                        self.policy.expired(&peer, now);
                    }
                }
            }
            BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message,
                ..
            }) => {
                let from = message.source.unwrap_or(propagation_source);
                self.push_event(NetEvent::Gossip {
                    from,
                    bytes: Bytes::from(message.data),
                });
            }
            _ => {}
        }
    }

    fn on_discovered(&mut self, found: Vec<(PeerId, Multiaddr)>) {
        let mut by_peer: BTreeMap<PeerId, Vec<Multiaddr>> = BTreeMap::new();
        for (peer, addr) in found {
            if self.config.team_key.is_some() && is_quic(&addr) {
                continue;
            }
            by_peer.entry(peer).or_default().push(addr);
        }
        let now = self.now_ms();
        for (peer, addrs) in by_peer {
            if !self.allowed(&peer) {
                continue;
            }
            tracing::debug!(peer = %peer, "discovered");
            self.policy.discovered(peer, addrs, now);
        }
        // The leader of a pair dials a peer it just found at once.
        self.drive_policy();
    }

    fn on_command(&mut self, command: Command) -> Flow {
        match command {
            Command::Publish { bytes, reply } => {
                let _ = reply.send(self.publish(bytes));
            }
            Command::Dial { addr, reply } => self.dial(addr, reply),
            Command::Disconnect { peer, reply } => {
                tracing::debug!(peer = %peer, "disconnecting on request");
                let _ = self.swarm.disconnect_peer_id(peer);
                let _ = reply.send(());
            }
            Command::DisconnectAndBan {
                peer,
                reason,
                reply,
            } => {
                self.ban(peer, Misbehaviour::Engine(reason));
                let _ = reply.send(());
            }
            Command::Peers { reply } => {
                let _ = reply.send(self.peer_infos());
            }
            Command::ListenAddrs { reply } => {
                let _ = reply.send(self.swarm.listeners().cloned().collect());
            }
            Command::AddPeer { addr, reply } => {
                let peer = peer_id_of(&addr);
                let added = self.policy.add_explicit(addr.clone(), peer, self.now_ms());
                if added {
                    tracing::info!(addr = %addr, "dialing an added peer");
                }
                let _ = reply.send(added);
            }
            Command::RemovePeer { addr, reply } => {
                let removed = self.policy.remove_explicit(&addr);
                if removed {
                    tracing::info!(addr = %addr, "no longer dialing a removed peer");
                }
                let _ = reply.send(removed);
            }
            Command::ExplicitPeers { reply } => {
                let _ = reply.send(self.policy.explicit_addrs());
            }
            Command::Discovery { reply } => {
                let _ = reply.send(crate::Discovery {
                    mdns: self.config.enable_mdns,
                    discovered: self.policy.discovered_count(),
                    explicit: self.policy.explicit_addrs().len(),
                    explicit_failure: self.explicit_failure.clone(),
                    running_for: self.started.elapsed(),
                });
            }
            Command::SetAllowlist { peers, reply } => {
                let _ = reply.send(self.set_allowlist(peers));
            }
            Command::SetTeamKeys {
                current,
                also_accept,
                reply,
            } => {
                let _ = reply.send(self.set_team_keys(current, also_accept));
            }
            Command::Shutdown { reply } => return Flow::Stop(reply),
        }
        Flow::Continue
    }

    /// Replaces the team keys (see [`crate::NetHandle::set_team_keys`]).
    fn set_team_keys(&mut self, key: [u8; 32], also_accept: Vec<[u8; 32]>) -> Result<(), NetError> {
        let Some(slot) = &self.team_key_slot else {
            return Err(NetError::InvalidConfig(
                "this network was started without a team key".into(),
            ));
        };
        let keys = crate::pnet::TeamKeys::new(key, also_accept)?;
        self.config.also_accept_keys = keys.also_accept().to_vec();
        *slot.write().unwrap_or_else(|p| p.into_inner()) = keys;
        if self.config.team_key == Some(key) {
            // Only the grace keys changed: connections made under any key stay.
            tracing::info!(
                also_accept = self.config.also_accept_keys.len(),
                "accepted team keys changed"
            );
            return Ok(());
        }
        self.config.team_key = Some(key);
        let topic = IdentTopic::new(self.config.gossip_topic());
        let gossipsub = &mut self.swarm.behaviour_mut().gossipsub;
        gossipsub.unsubscribe(&self.topic);
        gossipsub
            .subscribe(&topic)
            .map_err(|e| NetError::SwarmBuild(format!("gossipsub subscribe: {e}")))?;
        self.topic = topic;
        // Connections made under the old key cannot stay: peers that have the new
        // key reconnect with it (discovery, explicit peers), the others cannot.
        let connected: Vec<PeerId> = self.swarm.connected_peers().copied().collect();
        for peer in connected {
            let _ = self.swarm.disconnect_peer_id(peer);
        }
        tracing::info!("team key changed; reconnecting with the new key");
        Ok(())
    }

    /// Replaces the allowlist (see [`crate::NetHandle::set_allowlist`]).
    fn set_allowlist(&mut self, peers: BTreeSet<PeerId>) -> Result<(), NetError> {
        let Some(allowed) = self.swarm.behaviour_mut().allowed.as_mut() else {
            return Err(NetError::InvalidConfig(
                "this network was started without an allowlist".into(),
            ));
        };
        let current: Vec<PeerId> = allowed.allowed_peers().iter().copied().collect();
        for peer in current.iter().filter(|p| !peers.contains(p)) {
            // Also closes its connections.
            allowed.disallow_peer(*peer);
            tracing::info!(peer = %peer, "removed from the allowlist; disconnecting");
        }
        for peer in &peers {
            allowed.allow_peer(*peer);
        }
        self.config.allowlist = Some(peers);
        Ok(())
    }

    fn publish(&mut self, bytes: Bytes) -> Result<PublishOutcome, NetError> {
        if bytes.len() > self.config.max_gossip_size {
            return Err(NetError::GossipTooLarge {
                len: bytes.len(),
                max: self.config.max_gossip_size,
            });
        }
        let topic = self.topic.clone();
        match self.swarm.behaviour_mut().gossipsub.publish(topic, bytes) {
            Ok(_) => Ok(PublishOutcome::Sent),
            Err(PublishError::NoPeersSubscribedToTopic) => Ok(PublishOutcome::NoPeers),
            Err(PublishError::Duplicate) => Ok(PublishOutcome::Duplicate),
            Err(e) => Err(NetError::GossipPublish(e.to_string())),
        }
    }

    /// Starts a dial whose outcome answers `reply` (see [`crate::NetHandle::dial`]).
    fn dial(&mut self, addr: Multiaddr, reply: oneshot::Sender<Result<PeerId, NetError>>) {
        if self.config.team_key.is_some() && is_quic(&addr) {
            let _ = reply.send(Err(NetError::QuicWithTeamKey(addr)));
            return;
        }
        if self.pending_dials.len() >= MAX_PENDING_DIALS {
            let _ = reply.send(Err(NetError::Dial {
                addr,
                reason: "too many dials in flight".to_owned(),
            }));
            return;
        }
        let known_peer = peer_id_of(&addr);
        let opts = match known_peer {
            Some(peer) => DialOpts::peer_id(peer)
                .addresses(vec![addr.clone()])
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .allocate_new_port()
                .build(),
            None => DialOpts::unknown_peer_id()
                .address(addr.clone())
                .allocate_new_port()
                .build(),
        };
        let connection = opts.connection_id();
        match self.swarm.dial(opts) {
            Ok(()) => {
                self.pending_dials.insert(connection, (addr, reply));
            }
            Err(DialError::DialPeerConditionFalse(_)) => {
                // Connected already, or a dial to it is under way: the address's peer id
                // is the answer either way.
                let peer = known_peer.ok_or_else(|| NetError::Dial {
                    addr: addr.clone(),
                    reason: "dial condition not met".to_owned(),
                });
                let _ = reply.send(peer);
            }
            Err(e) => {
                let _ = reply.send(Err(NetError::Dial {
                    addr,
                    reason: e.to_string(),
                }));
            }
        }
    }

    fn peer_infos(&self) -> Vec<PeerInfo> {
        let mut infos: Vec<PeerInfo> = self
            .peers
            .iter()
            .map(|(peer, entry)| {
                let stats = entry.session.as_ref().map(|s| &s.stats);
                let load = |f: fn(&PeerStats) -> u64| stats.map_or(0, |s| f(s));
                let last_frame = stats.and_then(|s| s.last_frame());
                let last_seen = [Some(entry.connected_since), entry.last_ping, last_frame]
                    .into_iter()
                    .flatten()
                    .max()
                    .unwrap_or(entry.connected_since);
                let addrs: Vec<Multiaddr> = entry
                    .connections
                    .iter()
                    .map(|c| c.remote_addr.clone())
                    .collect();
                PeerInfo {
                    peer: *peer,
                    transport: addrs
                        .first()
                        .map_or(TransportKind::Other, TransportKind::of),
                    addrs,
                    connections: entry.connections.len(),
                    sync_stream: entry.session.is_some(),
                    session: entry.session.as_ref().map(|s| SessionId(s.generation)),
                    rtt: entry.rtt,
                    bytes_in: load(|s| s.bytes_in.load(std::sync::atomic::Ordering::Relaxed)),
                    bytes_out: load(|s| s.bytes_out.load(std::sync::atomic::Ordering::Relaxed)),
                    frames_in: load(|s| s.frames_in.load(std::sync::atomic::Ordering::Relaxed)),
                    frames_out: load(|s| s.frames_out.load(std::sync::atomic::Ordering::Relaxed)),
                    last_seen,
                    connected_since: entry.connected_since,
                }
            })
            .collect();
        infos.sort_by_key(|i| i.peer);
        infos
    }
}
