//! [`NetEventLoop`]: the task that owns the swarm and every piece of connection state.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, VecDeque},
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
    backoff::redial_delay,
    config::is_quic,
    handle::Command,
    session::{PeerStats, Session, SessionEnd, SessionEnded, SessionTable},
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

/// How often peers found by mDNS that we should be connected to, and are not, are
/// redialed (each no sooner than its own backoff allows).
const MDNS_REDIAL_SWEEP: Duration = Duration::from_secs(1);

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
}

/// Where an explicitly configured peer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TargetState {
    /// Waiting to dial at this instant.
    Waiting(Instant),
    Dialing(ConnectionId),
    Connected(PeerId),
}

#[derive(Debug)]
struct ExplicitPeer {
    addr: Multiaddr,
    /// From the address's `/p2p/` suffix, or learned on the first connection.
    peer: Option<PeerId>,
    failures: u32,
    state: TargetState,
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
    bans: HashMap<PeerId, Instant>,
    /// Peers that do not speak the sync protocol (other libp2p apps on the LAN): not
    /// redialed on discovery until the instant passes.
    foreign: HashMap<PeerId, Instant>,
    explicit: Vec<ExplicitPeer>,
    /// `NetHandle::dial` calls waiting for their connection's outcome.
    pending_dials: HashMap<ConnectionId, (Multiaddr, oneshot::Sender<Result<PeerId, NetError>>)>,
    rng: ChaCha8Rng,
    next_generation: u64,
    /// Peers found by mDNS whose dial failed or whose connection closed: failures in a
    /// row and when the sweep may redial them. mDNS reports a peer only once while it
    /// keeps answering, so without this a device whose first dial failed (a link that
    /// just came back) would never be dialed again.
    mdns_redial: HashMap<PeerId, (u32, Instant)>,
    /// The key the transport reads at every new connection, when keyed.
    team_key_slot: Option<crate::swarm::TeamKeySlot>,
    next_sweep: Instant,
}

impl fmt::Debug for NetEventLoop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetEventLoop")
            .field("local", &self.local)
            .field("topic", &self.topic.to_string())
            .field("peers", &self.peers.len())
            .field("bans", &self.bans.len())
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
        let team_key_slot = crate::swarm::team_key_slot(&config)?;
        let mut swarm = crate::swarm::build_swarm(&config, keypair, team_key_slot.clone())?;
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
        let now = Instant::now();
        let explicit = config
            .peers
            .iter()
            .map(|addr| ExplicitPeer {
                addr: addr.clone(),
                peer: peer_id_of(addr),
                failures: 0,
                state: TargetState::Waiting(now),
            })
            .collect();
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
            bans: HashMap::new(),
            foreign: HashMap::new(),
            explicit,
            pending_dials: HashMap::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            next_generation: 0,
            mdns_redial: HashMap::new(),
            next_sweep: now + MDNS_REDIAL_SWEEP,
            team_key_slot,
            config,
        };
        Ok((handle, events_rx, event_loop))
    }
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

    fn next_deadline(&self) -> Instant {
        let waiting = self.explicit.iter().filter_map(|t| match t.state {
            TargetState::Waiting(at) => Some(at),
            _ => None,
        });
        let sweep = self.config.enable_mdns.then_some(self.next_sweep);
        self.bans
            .values()
            .chain(self.foreign.values())
            .copied()
            .chain(waiting)
            .chain(sweep)
            .min()
            .unwrap_or_else(|| Instant::now() + IDLE_WAKEUP)
    }

    fn on_timers(&mut self) {
        let now = Instant::now();
        let expired: Vec<PeerId> = self
            .bans
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(peer, _)| *peer)
            .collect();
        for peer in expired {
            self.bans.remove(&peer);
            self.swarm.behaviour_mut().blocked.unblock_peer(peer);
            tracing::info!(peer = %peer, "ban expired");
        }
        self.foreign.retain(|_, until| *until > now);
        for index in 0..self.explicit.len() {
            if matches!(self.explicit[index].state, TargetState::Waiting(at) if at <= now) {
                self.dial_explicit(index);
            }
        }
        if self.config.enable_mdns && self.next_sweep <= now {
            self.next_sweep = now + MDNS_REDIAL_SWEEP;
            self.redial_discovered(now);
        }
    }

    /// Dials every peer mDNS still knows that we lead and are not connected to, once its
    /// backoff has passed.
    fn redial_discovered(&mut self, now: Instant) {
        let Some(mdns) = self.swarm.behaviour().mdns.as_ref() else {
            return;
        };
        let known: Vec<PeerId> = mdns.discovered_nodes().copied().collect();
        self.mdns_redial.retain(|peer, _| known.contains(peer));
        for peer in known {
            let due = self
                .mdns_redial
                .get(&peer)
                .is_none_or(|(_, next)| *next <= now);
            if !due || !self.wants_connection(&peer) {
                continue;
            }
            tracing::debug!(peer = %peer, "redialing a peer mDNS still sees");
            // The addresses come from mDNS (the behaviour answers for the peer id).
            let opts = DialOpts::peer_id(peer)
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .allocate_new_port()
                .build();
            if let Err(e) = self.swarm.dial(opts) {
                tracing::debug!(peer = %peer, error = %e, "not redialing discovered peer");
            }
        }
    }

    /// Whether we should dial `peer`: we are the leader of the pair, it is allowed, and
    /// we are not connected to it, have not banned it and did not find it foreign.
    fn wants_connection(&self, peer: &PeerId) -> bool {
        let allowed = self
            .config
            .allowlist
            .as_ref()
            .is_none_or(|list| list.contains(peer));
        is_leader(&self.local, peer)
            && allowed
            && !self.swarm.is_connected(peer)
            && !self.bans.contains_key(peer)
            && !self.foreign.contains_key(peer)
    }

    /// Backs off the sweep's next redial of `peer` after a failure or a disconnect.
    fn mdns_backoff(&mut self, peer: PeerId, failed: bool) {
        if !self.config.enable_mdns {
            return;
        }
        let failures = self.mdns_redial.get(&peer).map_or(0, |(f, _)| *f);
        let failures = if failed {
            failures.saturating_add(1)
        } else {
            failures
        };
        let delay = redial_delay(
            self.config.reconnect_base,
            self.config.reconnect_cap,
            failures.saturating_sub(1),
            &mut self.rng,
        );
        self.mdns_redial
            .insert(peer, (failures, Instant::now() + delay));
    }

    // Every dial here allocates a new local port (`allocate_new_port`). libp2p's default
    // reuses the listen port, and two peers dialling each other at the same moment from
    // their listen ports then make one TCP simultaneous open in which both act as noise
    // initiators: both handshakes fail ("input error"). Port reuse only helps NAT hole
    // punching, which peerdoc does not do.
    fn dial_explicit(&mut self, index: usize) {
        let target = &self.explicit[index];
        let opts = match target.peer {
            Some(peer) => DialOpts::peer_id(peer)
                .addresses(vec![target.addr.clone()])
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .allocate_new_port()
                .build(),
            None => DialOpts::unknown_peer_id()
                .address(target.addr.clone())
                .allocate_new_port()
                .build(),
        };
        let connection = opts.connection_id();
        let addr = target.addr.clone();
        match self.swarm.dial(opts) {
            Ok(()) => self.explicit[index].state = TargetState::Dialing(connection),
            Err(DialError::DialPeerConditionFalse(_)) => {
                // Already connected or being dialed by someone else (discovery, the peer
                // itself); a disconnect brings us back here.
                self.explicit[index].state = match self.explicit[index].peer {
                    Some(peer) if self.swarm.is_connected(&peer) => TargetState::Connected(peer),
                    // Never leave a past deadline behind: the loop would spin on it.
                    _ => self.backoff_state(index),
                };
            }
            Err(e) => {
                tracing::debug!(addr = %addr, error = %e, "cannot dial explicit peer");
                self.explicit[index].failures = self.explicit[index].failures.saturating_add(1);
                self.explicit[index].state = self.backoff_state(index);
            }
        }
    }

    fn backoff_state(&mut self, index: usize) -> TargetState {
        let failures = self.explicit[index].failures;
        let delay = redial_delay(
            self.config.reconnect_base,
            self.config.reconnect_cap,
            failures.saturating_sub(1),
            &mut self.rng,
        );
        TargetState::Waiting(Instant::now() + delay)
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
                num_established,
                ..
            } => self.on_connection_established(
                peer_id,
                connection_id,
                endpoint.is_dialer(),
                endpoint.get_remote_address().clone(),
                num_established.get(),
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
                if let (Some(peer), ListenError::Denied { .. }) = (peer_id, &error) {
                    tracing::debug!(peer = %peer, addr = %send_back_addr, "refused a connection");
                    self.push_event(NetEvent::ConnectionDenied { peer });
                } else {
                    tracing::debug!(addr = %send_back_addr, error = %error, "incoming connection failed");
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
        num_established: u32,
    ) {
        tracing::debug!(peer = %peer, addr = %remote_addr, dialed_by_us, "connection established");
        self.mdns_redial.remove(&peer);
        if let Some((_, reply)) = self.pending_dials.remove(&id) {
            let _ = reply.send(Ok(peer));
        }
        for target in &mut self.explicit {
            if target.state == TargetState::Dialing(id) {
                target.state = TargetState::Connected(peer);
                target.peer = Some(peer);
                target.failures = 0;
            }
        }
        let entry = self.peers.entry(peer).or_insert_with(|| ConnectedPeer {
            connections: Vec::new(),
            connected_since: SystemTime::now(),
            rtt: None,
            last_ping: None,
            session: None,
            stream_attempts: 0,
            open_seq: 0,
            inbound_window: (Instant::now(), 0),
        });
        entry.connections.push(Connection {
            id,
            dialed_by_us,
            remote_addr,
        });
        if !is_leader(&self.local, &peer) {
            // The other side opens the stream and settles duplicates.
            if let Some(stream) = self.early_inbound.remove(&peer) {
                self.start_session(peer, stream);
            }
            return;
        }
        if num_established > 1 {
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
        if !current || self.bans.contains_key(&peer) {
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
        if self.bans.contains_key(&peer) {
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
        self.bans
            .insert(peer, Instant::now() + self.config.ban_duration);
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
        self.foreign
            .insert(peer, Instant::now() + self.config.ban_duration);
        let _ = self.swarm.disconnect_peer_id(peer);
    }

    fn on_connection_closed(&mut self, peer: PeerId, id: ConnectionId, remaining: u32) {
        if let Some(entry) = self.peers.get_mut(&peer) {
            entry.connections.retain(|c| c.id != id);
        }
        if remaining > 0 {
            if is_leader(&self.local, &peer) {
                self.restart_stream(peer);
            }
            return;
        }
        self.early_inbound.remove(&peer);
        self.mdns_backoff(peer, false);
        if let Some(slot) = self.peers.remove(&peer).and_then(|e| e.session) {
            self.retire(peer, slot);
        }
        for index in 0..self.explicit.len() {
            if self.explicit[index].state == TargetState::Connected(peer) {
                self.explicit[index].state = self.backoff_state(index);
            }
        }
    }

    fn on_dial_failure(&mut self, id: ConnectionId, peer: Option<PeerId>, error: &DialError) {
        tracing::debug!(peer = ?peer, error = %error, "dial failed");
        if let Some(peer) = peer {
            self.mdns_backoff(peer, true);
        }
        if let Some((addr, reply)) = self.pending_dials.remove(&id) {
            let _ = reply.send(Err(NetError::Dial {
                addr,
                reason: error.to_string(),
            }));
        }
        for index in 0..self.explicit.len() {
            if self.explicit[index].state == TargetState::Dialing(id) {
                self.explicit[index].failures = self.explicit[index].failures.saturating_add(1);
                self.explicit[index].state = self.backoff_state(index);
            }
        }
        self.push_event(NetEvent::DialFailed {
            peer,
            error: error.to_string(),
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
                }
                // A peer without ping is judged by identify, not by liveness.
                Err(ping::Failure::Unsupported) => {
                    tracing::debug!(peer = %peer, "peer does not support ping");
                }
                // A timeout, but also a ping stream whose negotiation timed out: on a
                // link that went dead (a device out of Wi-Fi range) the latter is what
                // we get, and without closing, the connection would linger for minutes.
                Err(e) => {
                    tracing::debug!(peer = %peer, error = %e, "ping failed; closing connection");
                    self.swarm.close_connection(connection);
                }
            },
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => self.on_discovered(found),
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
        for (peer, addrs) in by_peer {
            if !self.wants_connection(&peer) {
                continue;
            }
            tracing::debug!(peer = %peer, "discovered; dialing");
            let opts = DialOpts::peer_id(peer)
                .addresses(addrs)
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .allocate_new_port()
                .build();
            if let Err(e) = self.swarm.dial(opts) {
                tracing::debug!(peer = %peer, error = %e, "not dialing discovered peer");
            }
        }
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
        self.mdns_redial.clear();
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
