//! The team gate with several accepted keys, over TCP on 127.0.0.1 with mDNS off:
//! wire compatibility with libp2p's own pnet, dialing with the current key, accepting
//! grace keys, and changing the key set at run time.
//!
//! Every wait has a generous timeout that only guards against a hang; assertions are
//! about what happened, never how fast.

use std::{future::Future, time::Duration};

use bytes::Bytes;
use futures::StreamExt as _;
use libp2p::{
    Multiaddr, PeerId, SwarmBuilder,
    core::{Transport as _, upgrade::Version},
    identity::Keypair,
    noise, ping,
    pnet::{PnetConfig, PreSharedKey},
    swarm::{NetworkBehaviour, SwarmEvent},
    tcp, yamux,
};
use peerdoc_net::{
    NetConfig, NetError, NetEvent, NetHandle, Network, PublishOutcome, SYNC_PROTOCOL,
};
use tokio::sync::mpsc;

/// Failure guard for any single wait.
const GUARD: Duration = Duration::from_secs(30);

const K1: [u8; 32] = [1; 32];
const K2: [u8; 32] = [2; 32];
const K3: [u8; 32] = [3; 32];

async fn guard<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(GUARD, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

struct Node {
    net: NetHandle,
    events: mpsc::Receiver<NetEvent>,
    addr: Multiaddr,
    id: PeerId,
}

/// Starts a node whose transport dials with `current` and also accepts `also_accept`.
async fn start(current: [u8; 32], also_accept: &[[u8; 32]]) -> Node {
    if std::env::var_os("NET_TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_test_writer()
            .try_init();
    }
    let config = NetConfig {
        team_key: Some(current),
        also_accept_keys: also_accept.to_vec(),
        ..NetConfig::loopback()
    };
    assert!(!config.enable_mdns);
    let (net, mut events, event_loop) = Network::new(config, Keypair::generate_ed25519()).unwrap();
    tokio::spawn(event_loop.run());
    let addr = guard("listen address", async {
        loop {
            match events.recv().await {
                Some(NetEvent::Listening { addr }) => break addr,
                Some(_) => {}
                None => panic!("event loop ended"),
            }
        }
    })
    .await;
    Node {
        id: net.local_peer_id(),
        net,
        events,
        addr,
    }
}

impl Node {
    async fn wait_for<T>(&mut self, what: &str, mut pick: impl FnMut(&NetEvent) -> Option<T>) -> T {
        guard(what, async {
            loop {
                match self.events.recv().await {
                    Some(event) => {
                        if let Some(v) = pick(&event) {
                            break v;
                        }
                    }
                    None => panic!("event loop ended while waiting for {what}"),
                }
            }
        })
        .await
    }

    async fn connected_to(&mut self, peer: PeerId) {
        self.wait_for("PeerConnected", |e| {
            matches!(e, NetEvent::PeerConnected { peer: p, .. } if *p == peer).then_some(())
        })
        .await;
    }

    /// Waits until the sync streams of every peer in `peers` have ended, in any order.
    async fn disconnected_from(&mut self, mut peers: Vec<PeerId>) {
        while !peers.is_empty() {
            let gone = self
                .wait_for("PeerDisconnected", |e| match e {
                    NetEvent::PeerDisconnected { peer, .. } if peers.contains(peer) => Some(*peer),
                    _ => None,
                })
                .await;
            peers.retain(|p| *p != gone);
        }
    }

    fn drain(&mut self) -> Vec<NetEvent> {
        std::iter::from_fn(|| self.events.try_recv().ok()).collect()
    }

    async fn peer_ids(&self) -> Vec<PeerId> {
        let mut ids: Vec<PeerId> = self
            .net
            .peers()
            .await
            .unwrap()
            .iter()
            .map(|p| p.peer)
            .collect();
        ids.sort();
        ids
    }

    /// Dials `other` and expects the dial to fail (the team gate refuses it).
    async fn dial_is_refused(&mut self, other: &Node) {
        let dialed = guard("dial outcome", self.net.dial(other.addr.clone())).await;
        assert!(matches!(dialed, Err(NetError::Dial { .. })), "{dialed:?}");
        assert!(!self.peer_ids().await.contains(&other.id));
    }
}

/// Connects `a` to `b` by explicit dial and waits until both have a sync stream.
async fn connect(a: &mut Node, b: &mut Node) {
    assert_eq!(a.net.dial(b.addr.clone()).await.unwrap(), b.id);
    a.connected_to(b.id).await;
    b.connected_to(a.id).await;
}

/// `from` sends a frame on its sync stream to `to`, which must receive it.
async fn frame_arrives(from: &mut Node, to: &mut Node, body: &'static [u8]) {
    let session = guard("a sync session", async {
        loop {
            let peers = from.net.peers().await.unwrap();
            if let Some(s) = peers
                .iter()
                .find(|p| p.peer == to.id)
                .and_then(|p| p.session)
            {
                break s;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    from.net
        .send_frame(to.id, session, Bytes::from_static(body))
        .unwrap();
    let from_id = from.id;
    let got = to
        .wait_for("frame", |e| match e {
            NetEvent::Frame { peer, bytes, .. } if *peer == from_id => Some(bytes.clone()),
            _ => None,
        })
        .await;
    assert_eq!(&got[..], body);
}

/// Nothing `node` reported about `stranger` goes beyond a failed handshake: no stream,
/// no frame, no ban, no denial (which would mean it got past the gate to the allowlist).
fn saw_nothing_of(events: &[NetEvent], stranger: PeerId) {
    for event in events {
        match event {
            NetEvent::PeerConnected { peer, .. }
            | NetEvent::Frame { peer, .. }
            | NetEvent::ConnectionDenied { peer } => {
                assert_ne!(*peer, stranger, "the stranger got past the gate: {event:?}")
            }
            NetEvent::PeerMisbehaved { .. } => panic!("unexpected {event:?}"),
            _ => {}
        }
    }
}

#[derive(Debug)]
enum StockEvent {
    Listening(Multiaddr),
    Connected(PeerId),
    Pinged(PeerId),
    DialFailed,
}

/// Ping, plus a sync-protocol acceptor that holds our node's sync streams open, so that
/// our node keeps the connection (a peer refusing the sync stream would be dropped).
#[derive(NetworkBehaviour)]
struct StockBehaviour {
    ping: ping::Behaviour,
    stream: libp2p_stream::Behaviour,
}

/// A swarm built from stock libp2p: TCP, `libp2p::pnet` with `key`, Noise, yamux, ping.
struct StockPeer {
    id: PeerId,
    addr: Multiaddr,
    dial: mpsc::Sender<Multiaddr>,
    events: mpsc::Receiver<StockEvent>,
}

async fn start_stock(key: [u8; 32]) -> StockPeer {
    let keypair = Keypair::generate_ed25519();
    let id = keypair.public().to_peer_id();
    let mut swarm = SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_other_transport(
            |identity| -> Result<_, Box<dyn std::error::Error + Send + Sync>> {
                let noise = noise::Config::new(identity)?;
                Ok(tcp::tokio::Transport::new(tcp::Config::default())
                    .and_then(move |socket, _| {
                        PnetConfig::new(PreSharedKey::new(key)).handshake(socket)
                    })
                    .upgrade(Version::V1Lazy)
                    .authenticate(noise)
                    .multiplex(yamux::Config::default()))
            },
        )
        .unwrap()
        .with_behaviour(|_| StockBehaviour {
            ping: ping::Behaviour::new(
                ping::Config::new().with_interval(Duration::from_millis(100)),
            ),
            stream: libp2p_stream::Behaviour::new(),
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    let mut sync_streams = swarm
        .behaviour()
        .stream
        .new_control()
        .accept(SYNC_PROTOCOL)
        .unwrap();
    let (dial, mut dials) = mpsc::channel::<Multiaddr>(4);
    let (events_tx, mut events) = mpsc::channel(256);
    tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let event = tokio::select! {
                Some((_, stream)) = sync_streams.next() => {
                    held.push(stream);
                    None
                }
                addr = dials.recv() => match addr {
                    Some(addr) => {
                        if swarm.dial(addr).is_err() {
                            Some(StockEvent::DialFailed)
                        } else {
                            None
                        }
                    }
                    None => break,
                },
                event = swarm.select_next_some() => match event {
                    SwarmEvent::NewListenAddr { address, .. } => Some(StockEvent::Listening(address)),
                    SwarmEvent::ConnectionEstablished { peer_id, .. } => Some(StockEvent::Connected(peer_id)),
                    SwarmEvent::Behaviour(StockBehaviourEvent::Ping(ping::Event {
                        peer,
                        result: Ok(_),
                        ..
                    })) => Some(StockEvent::Pinged(peer)),
                    SwarmEvent::OutgoingConnectionError { .. } => Some(StockEvent::DialFailed),
                    _ => None,
                },
            };
            if let Some(event) = event
                && events_tx.send(event).await.is_err()
            {
                break;
            }
        }
    });
    let addr = guard("stock listen address", async {
        loop {
            if let Some(StockEvent::Listening(addr)) = events.recv().await {
                break addr;
            }
        }
    })
    .await;
    StockPeer {
        id,
        addr,
        dial,
        events,
    }
}

impl StockPeer {
    /// Waits until a ping to or from `peer` succeeded over a connection: pnet, Noise and
    /// yamux all worked, and application bytes flowed both ways.
    async fn pinged(&mut self, peer: PeerId) {
        guard("a ping over the connection", async {
            loop {
                match self.events.recv().await {
                    Some(StockEvent::Pinged(p)) if p == peer => break,
                    Some(StockEvent::DialFailed) => panic!("the stock peer's dial failed"),
                    Some(_) => {}
                    None => panic!("stock peer stopped"),
                }
            }
        })
        .await;
    }

    async fn dial_fails(&mut self, addr: Multiaddr) {
        self.dial.send(addr).await.unwrap();
        guard("the stock peer's dial to fail", async {
            loop {
                match self.events.recv().await {
                    Some(StockEvent::DialFailed) => break,
                    Some(StockEvent::Connected(p)) => panic!("connected to {p} with a wrong key"),
                    Some(_) => {}
                    None => panic!("stock peer stopped"),
                }
            }
        })
        .await;
    }
}

/// Our private-network layer speaks libp2p-pnet's wire format, dialing and listening.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_libp2p_pnet_and_ours_connect_both_ways() {
    let mut stock = start_stock(K1).await;

    // Stock dials us; we accept K1 as a grace key.
    let listener = start(K2, &[K1]).await;
    stock.dial.send(listener.addr.clone()).await.unwrap();
    stock.pinged(listener.id).await;
    assert!(listener.peer_ids().await.contains(&stock.id));

    // We dial stock with our current key.
    let dialer = start(K1, &[K3]).await;
    assert_eq!(
        guard("dial", dialer.net.dial(stock.addr.clone()))
            .await
            .unwrap(),
        stock.id
    );
    stock.pinged(dialer.id).await;

    // Controls: no shared key, no connection, either way.
    let mut other = start(K3, &[K2]).await;
    let dialed = guard("dial", other.net.dial(stock.addr.clone())).await;
    assert!(matches!(dialed, Err(NetError::Dial { .. })), "{dialed:?}");
    stock.dial_fails(other.addr.clone()).await;
    saw_nothing_of(&other.drain(), stock.id);
}

/// A member accepts every key of its set and dials with its current key only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grace_keys_admit_members_that_missed_a_rotation_and_nobody_else() {
    let mut a = start(K2, &[K1]).await;
    let mut b = start(K1, &[]).await; // missed the rotation
    let mut c = start(K2, &[]).await; // current
    let mut d = start(K3, &[]).await; // another team

    connect(&mut b, &mut a).await;
    frame_arrives(&mut b, &mut a, b"old key, still a member").await;
    frame_arrives(&mut a, &mut b, b"here is the news").await;
    connect(&mut c, &mut a).await;
    frame_arrives(&mut c, &mut a, b"current key").await;

    d.dial_is_refused(&a).await;
    saw_nothing_of(&a.drain(), d.id);
    let mut members = vec![b.id, c.id];
    members.sort();
    assert_eq!(a.peer_ids().await, members);

    // Outbound, a uses its current key only: a device that knows only k1 refuses it.
    let e = start(K1, &[]).await;
    a.dial_is_refused(&e).await;
}

/// Narrowing the set refuses the dropped key but keeps connections; a new current key
/// closes every connection and moves gossip to the new key's topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changing_the_key_set_at_run_time() {
    let mut a = start(K2, &[K1]).await;
    let mut b = start(K1, &[]).await;
    let mut c = start(K2, &[]).await;
    let mut d = start(K3, &[]).await;
    let mut e = start(K1, &[]).await;
    connect(&mut b, &mut a).await;
    connect(&mut c, &mut a).await;

    // Only the grace keys change: connections stay, new k1 dials are refused.
    a.net.set_team_keys(K2, vec![]).await.unwrap();
    e.dial_is_refused(&a).await;
    assert!(
        a.drain()
            .iter()
            .all(|ev| !matches!(ev, NetEvent::PeerDisconnected { .. }))
    );
    frame_arrives(&mut b, &mut a, b"still connected").await;
    frame_arrives(&mut c, &mut a, b"still connected").await;

    // Bounded, and only for a keyed network.
    let too_many = (10..19).map(|b| [b; 32]).collect();
    assert!(matches!(
        a.net.set_team_keys(K3, too_many).await,
        Err(NetError::InvalidConfig(_))
    ));
    let keyless = Network::new(NetConfig::loopback(), Keypair::generate_ed25519())
        .map(|(net, _, event_loop)| {
            tokio::spawn(event_loop.run());
            net
        })
        .unwrap();
    assert!(matches!(
        keyless.set_team_keys(K1, vec![]).await,
        Err(NetError::InvalidConfig(_))
    ));

    // A new current key closes every connection.
    a.net.set_team_keys(K3, vec![K2]).await.unwrap();
    a.disconnected_from(vec![b.id, c.id]).await;
    guard("a to drop every connection", async {
        while !a.peer_ids().await.is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    // k2 is now a grace key, k3 the current one, k1 refused.
    connect(&mut c, &mut a).await;
    connect(&mut d, &mut a).await;
    e.dial_is_refused(&a).await;
    b.dial_is_refused(&a).await;

    // Gossip moved to k3's topic: d hears a's announcements, c (k2's topic) does not.
    let mut round = 0u32;
    guard("gossip at d", async {
        loop {
            round += 1;
            let outcome = a
                .net
                .publish(Bytes::from(format!("announcement {round}")))
                .await
                .unwrap();
            assert!(matches!(
                outcome,
                PublishOutcome::Sent | PublishOutcome::NoPeers
            ));
            tokio::time::sleep(Duration::from_millis(200)).await;
            let heard = d
                .drain()
                .into_iter()
                .any(|ev| matches!(ev, NetEvent::Gossip { from, .. } if from == a.id));
            if heard {
                break;
            }
        }
    })
    .await;
    assert!(
        c.drain()
            .iter()
            .all(|ev| !matches!(ev, NetEvent::Gossip { from, .. } if *from == a.id))
    );
}
