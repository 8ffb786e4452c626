//! In-process network tests: TCP on 127.0.0.1, mDNS off, explicit dials.
//!
//! One file past 800 lines on purpose: every test shares the node harness at the top,
//! and splitting it would copy that harness.
//!
//! Every wait has a generous timeout that only guards against a hang; assertions are
//! about what happened, never how fast.

use std::{collections::BTreeSet, future::Future, time::Duration};

use bytes::Bytes;
use futures::{AsyncWriteExt as _, StreamExt as _};
use libp2p::{Multiaddr, PeerId, SwarmBuilder, identity::Keypair, noise, tcp, yamux};
use peerdoc_net::{
    Misbehaviour, NetConfig, NetError, NetEvent, NetHandle, Network, PublishOutcome, SYNC_PROTOCOL,
    SessionId,
};
use tokio::sync::mpsc;

/// Failure guard for any single wait.
const GUARD: Duration = Duration::from_secs(30);

struct Node {
    net: NetHandle,
    events: mpsc::Receiver<NetEvent>,
    addr: Multiaddr,
    id: PeerId,
}

async fn guard<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(GUARD, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

async fn start_with(config: NetConfig, keypair: Keypair) -> Node {
    // NET_TEST_LOG=1 shows the crate's debug events (tests may install a subscriber).
    if std::env::var_os("NET_TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_test_writer()
            .try_init();
    }
    assert!(
        !config.enable_mdns,
        "tests never run mDNS in the host namespace"
    );
    let (net, mut events, event_loop) = Network::new(config, keypair).unwrap();
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

async fn start(config: NetConfig) -> Node {
    start_with(config, Keypair::generate_ed25519()).await
}

impl Node {
    /// Waits for the first event `pick` accepts, skipping the rest.
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

    async fn frame_from(&mut self, peer: PeerId) -> Bytes {
        self.wait_for("frame", |e| match e {
            NetEvent::Frame { peer: p, bytes, .. } if *p == peer => Some(bytes.clone()),
            _ => None,
        })
        .await
    }

    /// The session of our current sync stream to `peer`.
    async fn session_for(&self, peer: PeerId) -> SessionId {
        session_of(&self.net, peer).await
    }

    /// Everything already in the event channel, without waiting.
    fn drain(&mut self) -> Vec<NetEvent> {
        std::iter::from_fn(|| self.events.try_recv().ok()).collect()
    }
}

/// Connects `a` to `b` by explicit dial and waits until both have a sync stream.
async fn connect(a: &mut Node, b: &mut Node) {
    assert_eq!(a.net.dial(b.addr.clone()).await.unwrap(), b.id);
    a.connected_to(b.id).await;
    b.connected_to(a.id).await;
}

/// The session of `net`'s current sync stream to `peer`, waiting for one to open.
async fn session_of(net: &NetHandle, peer: PeerId) -> SessionId {
    guard("a sync session", async {
        loop {
            let peers = net.peers().await.unwrap();
            if let Some(session) = peers
                .iter()
                .find(|p| p.peer == peer)
                .and_then(|p| p.session)
            {
                break session;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

/// Queues a frame, waiting politely while the peer's queue is full.
async fn send(net: &NetHandle, peer: PeerId, session: SessionId, frame: Bytes) {
    guard("room in the peer queue", async {
        loop {
            match net.send_frame(peer, session, frame.clone()) {
                Ok(()) => break,
                Err(NetError::PeerQueueFull { .. }) => {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err(e) => panic!("send_frame: {e}"),
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_frames_arrive_in_order_and_are_counted() {
    let mut a = start(NetConfig::loopback()).await;
    let mut b = start(NetConfig::loopback()).await;
    connect(&mut a, &mut b).await;

    let frame = |i: u32| {
        let mut body = i.to_be_bytes().to_vec();
        body.resize(4 + (i as usize * 7) % 3000, (i % 251) as u8);
        Bytes::from(body)
    };
    let sender = {
        let net = a.net.clone();
        let to = b.id;
        let session = a.session_for(b.id).await;
        tokio::spawn(async move {
            for i in 0..1000 {
                send(&net, to, session, frame(i)).await;
            }
        })
    };
    let mut total = 0u64;
    for i in 0..1000 {
        let got = b.frame_from(a.id).await;
        assert_eq!(got, frame(i), "frame {i} out of order or corrupted");
        total += got.len() as u64;
    }
    sender.await.unwrap();

    let b_view = b.net.peers().await.unwrap();
    let a_in_b = b_view.iter().find(|p| p.peer == a.id).unwrap();
    assert_eq!(a_in_b.frames_in, 1000);
    assert_eq!(a_in_b.bytes_in, total);
    assert!(a_in_b.sync_stream);
    assert_eq!(a_in_b.transport.as_str(), "tcp");
    let a_view = a.net.peers().await.unwrap();
    assert_eq!(
        a_view.iter().find(|p| p.peer == b.id).unwrap().bytes_out,
        total
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frame_bans_the_sender_and_spares_other_peers() {
    let mut receiver = start(NetConfig {
        max_frame_size: 1024,
        ..NetConfig::loopback()
    })
    .await;
    let mut offender = start(NetConfig::loopback()).await;
    let mut bystander = start(NetConfig::loopback()).await;
    connect(&mut offender, &mut receiver).await;
    connect(&mut bystander, &mut receiver).await;

    let session = offender.session_for(receiver.id).await;
    offender
        .net
        .send_frame(receiver.id, session, Bytes::from(vec![0u8; 2048]))
        .unwrap();
    let (peer, reason) = receiver
        .wait_for("PeerMisbehaved", |e| match e {
            NetEvent::PeerMisbehaved { peer, reason } => Some((*peer, reason.clone())),
            _ => None,
        })
        .await;
    assert_eq!(peer, offender.id);
    assert_eq!(
        reason,
        Misbehaviour::FrameTooLarge {
            len: 2048,
            max: 1024
        }
    );
    offender
        .wait_for("PeerDisconnected", |e| {
            matches!(e, NetEvent::PeerDisconnected { peer, .. } if *peer == receiver.id)
                .then_some(())
        })
        .await;

    // The bystander's stream is untouched, both ways.
    let session = bystander.session_for(receiver.id).await;
    bystander
        .net
        .send_frame(receiver.id, session, Bytes::from_static(b"still here"))
        .unwrap();
    assert_eq!(&receiver.frame_from(bystander.id).await[..], b"still here");
    let session = receiver.session_for(bystander.id).await;
    receiver
        .net
        .send_frame(bystander.id, session, Bytes::from_static(b"and you"))
        .unwrap();
    assert_eq!(&bystander.frame_from(receiver.id).await[..], b"and you");

    // The ban refuses the offender's next connection.
    // Whether the offender sees its dial fail or its connection cut is a race; either way
    // the receiver refuses it.
    let _ = offender.net.dial(receiver.addr.clone()).await;
    receiver
        .wait_for("ConnectionDenied", |e| {
            matches!(e, NetEvent::ConnectionDenied { peer } if *peer == offender.id).then_some(())
        })
        .await;
    assert!(
        receiver
            .drain()
            .iter()
            .all(|e| !matches!(e, NetEvent::PeerConnected { peer, .. } if *peer == offender.id))
    );
}

/// A peer that speaks the sync protocol's id but sends a length prefix that is no varint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_length_prefix_disconnects_without_panicking() {
    let victim_key = Keypair::generate_ed25519();
    let victim_id = victim_key.public().to_peer_id();
    // The lower peer id opens the sync stream: make the victim the opener, so the rogue
    // only has to answer on the stream it is given.
    let rogue_key = loop {
        let key = Keypair::generate_ed25519();
        if key.public().to_peer_id() > victim_id {
            break key;
        }
    };
    let rogue_id = rogue_key.public().to_peer_id();
    let mut victim = start_with(NetConfig::loopback(), victim_key).await;

    let mut rogue = SwarmBuilder::with_existing_identity(rogue_key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| libp2p_stream::Behaviour::new())
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    let mut incoming = rogue
        .behaviour()
        .new_control()
        .accept(SYNC_PROTOCOL)
        .unwrap();
    rogue.dial(victim.addr.clone()).unwrap();
    tokio::spawn(async move {
        loop {
            rogue.select_next_some().await;
        }
    });
    tokio::spawn(async move {
        while let Some((_, mut stream)) = incoming.next().await {
            // Six continuation bytes: longer than any 32-bit varint.
            let _ = stream.write_all(&[0xff; 6]).await;
            let _ = stream.flush().await;
            // Keep the stream open so only the prefix can be blamed.
            tokio::time::sleep(GUARD).await;
        }
    });

    let (peer, reason) = victim
        .wait_for("PeerMisbehaved", |e| match e {
            NetEvent::PeerMisbehaved { peer, reason } => Some((*peer, reason.clone())),
            _ => None,
        })
        .await;
    assert_eq!(peer, rogue_id);
    assert_eq!(reason, Misbehaviour::MalformedLengthPrefix);
    // The victim is still alive and has dropped the rogue.
    let peers = guard("rogue gone", async {
        loop {
            let peers = victim.net.peers().await.unwrap();
            if peers.iter().all(|p| p.peer != rogue_id) {
                break peers;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(peers.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gossip_reaches_every_node_including_through_a_relay() {
    let mut hub = start(NetConfig::loopback()).await;
    let mut b = start(NetConfig::loopback()).await;
    let mut c = start(NetConfig::loopback()).await;
    let mut d = start(NetConfig::loopback()).await;
    // d only knows c: hub's announcements reach d through c.
    connect(&mut b, &mut hub).await;
    connect(&mut c, &mut hub).await;
    connect(&mut d, &mut c).await;

    let mut heard = BTreeSet::new();
    let mut round = 0u32;
    guard("gossip at b, c and d", async {
        while heard.len() < 3 {
            // Subscriptions propagate asynchronously; keep announcing (distinct bytes,
            // since message ids are content hashes) until every node has heard one.
            round += 1;
            let outcome = hub
                .net
                .publish(Bytes::from(format!("announcement {round}")))
                .await
                .unwrap();
            assert!(matches!(
                outcome,
                PublishOutcome::Sent | PublishOutcome::NoPeers
            ));
            tokio::time::sleep(Duration::from_millis(200)).await;
            for (name, node) in [("b", &mut b), ("c", &mut c), ("d", &mut d)] {
                for event in node.drain() {
                    if let NetEvent::Gossip { from, bytes } = event {
                        assert_eq!(from, hub.id);
                        assert!(bytes.starts_with(b"announcement "));
                        heard.insert(name);
                    }
                }
            }
        }
    })
    .await;

    // Publishing the same bytes twice is not an error either.
    let same = Bytes::from_static(b"same announcement");
    hub.net.publish(same.clone()).await.unwrap();
    assert_eq!(
        hub.net.publish(same).await.unwrap(),
        PublishOutcome::Duplicate
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_without_peers_is_not_an_error() {
    let lonely = start(NetConfig::loopback()).await;
    let outcome = lonely
        .net
        .publish(Bytes::from_static(b"anyone?"))
        .await
        .unwrap();
    assert_eq!(outcome, PublishOutcome::NoPeers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_key_admits_members_and_shuts_out_everyone_else() {
    let team = |key| NetConfig {
        team_key: key,
        ..NetConfig::loopback()
    };
    let mut a = start(team(Some([42; 32]))).await;
    let mut b = start(team(Some([42; 32]))).await;
    let mut wrong_key = start(team(Some([7; 32]))).await;
    let mut no_key = start(team(None)).await;

    connect(&mut b, &mut a).await;
    let session = b.session_for(a.id).await;
    b.net
        .send_frame(a.id, session, Bytes::from_static(b"member"))
        .unwrap();
    assert_eq!(&a.frame_from(b.id).await[..], b"member");

    for stranger in [&mut wrong_key, &mut no_key] {
        let dialed = guard("dial outcome", stranger.net.dial(a.addr.clone())).await;
        assert!(matches!(dialed, Err(NetError::Dial { .. })), "{dialed:?}");
        stranger
            .wait_for("DialFailed", |e| {
                matches!(e, NetEvent::DialFailed { .. }).then_some(())
            })
            .await;
        assert!(stranger.net.peers().await.unwrap().is_empty());
        assert!(
            stranger
                .drain()
                .iter()
                .all(|e| !matches!(e, NetEvent::PeerConnected { .. } | NetEvent::Frame { .. }))
        );
        assert!(matches!(
            a.net.send_frame(
                stranger.id,
                SessionId::from_u64(0),
                Bytes::from_static(b"secret")
            ),
            Err(NetError::PeerNotConnected { .. })
        ));
    }
    let strangers = [wrong_key.id, no_key.id];
    assert!(a.drain().iter().all(|e| !matches!(
        e,
        NetEvent::PeerConnected { peer, .. } | NetEvent::Frame { peer, .. } if strangers.contains(peer)
    )));
    let a_peers: Vec<PeerId> = a
        .net
        .peers()
        .await
        .unwrap()
        .iter()
        .map(|p| p.peer)
        .collect();
    assert_eq!(a_peers, vec![b.id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowlist_refuses_unlisted_peers() {
    let member_key = Keypair::generate_ed25519();
    let member_id = member_key.public().to_peer_id();
    let mut gate = start(NetConfig {
        allowlist: Some(BTreeSet::from([member_id])),
        ..NetConfig::loopback()
    })
    .await;
    let mut member = start_with(NetConfig::loopback(), member_key).await;
    let outsider = start(NetConfig::loopback()).await;

    let _ = outsider.net.dial(gate.addr.clone()).await;
    gate.wait_for("ConnectionDenied", |e| {
        matches!(e, NetEvent::ConnectionDenied { peer } if *peer == outsider.id).then_some(())
    })
    .await;

    connect(&mut member, &mut gate).await;
    let peers: Vec<PeerId> = gate
        .net
        .peers()
        .await
        .unwrap()
        .iter()
        .map(|p| p.peer)
        .collect();
    assert_eq!(peers, vec![member_id]);
    assert!(
        gate.drain()
            .iter()
            .all(|e| !matches!(e, NetEvent::PeerConnected { peer, .. } if *peer == outsider.id))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialing_both_ways_settles_on_one_connection_and_one_stream() {
    let mut a = start(NetConfig::loopback()).await;
    let mut b = start(NetConfig::loopback()).await;
    // Both dials complete, so two connections exist at some point; the leader (lower
    // peer id) closes one and moves the sync stream if it rode the closed one.
    // Each dial uses a fresh local port: with port reuse the two would be one TCP
    // simultaneous open and both noise handshakes would fail.
    let (ra, rb) = tokio::join!(a.net.dial(b.addr.clone()), b.net.dial(a.addr.clone()));
    assert_eq!(ra.unwrap(), b.id);
    assert_eq!(rb.unwrap(), a.id);

    settled(&a, b.id).await;
    settled(&b, a.id).await;
    // The surviving stream carries frames both ways. A frame queued on a stream that is
    // being replaced is dropped with it (the engine sees PeerDisconnected and resyncs),
    // so resend until one gets through.
    round_trip(&mut a, &mut b).await;
    round_trip(&mut b, &mut a).await;

    // Every PeerConnected is followed by its PeerDisconnected before the next one: the
    // engine never sees two channels to one peer at once.
    for node in [&mut a, &mut b] {
        let mut open = 0i32;
        for event in node.drain() {
            match event {
                NetEvent::PeerConnected { .. } => open += 1,
                NetEvent::PeerDisconnected { .. } => open -= 1,
                _ => {}
            }
            assert!((0..=1).contains(&open), "overlapping sync streams");
        }
    }
    settled(&a, b.id).await;
    settled(&b, a.id).await;
}

/// Waits until `node` has exactly one connection, carrying a sync stream, to `other`.
async fn settled(node: &Node, other: PeerId) {
    guard("a single connection with a stream", async {
        loop {
            let peers = node.net.peers().await.unwrap();
            if let [p] = &peers[..]
                && p.peer == other
                && p.connections == 1
                && p.sync_stream
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// Sends numbered frames from `from` to `to` until one arrives.
async fn round_trip(from: &mut Node, to: &mut Node) {
    guard("a frame over the settled stream", async {
        for attempt in 0u32.. {
            let body = Bytes::from(format!("hello {attempt}"));
            let session = from.session_for(to.id).await;
            if from.net.send_frame(to.id, session, body).is_ok() {
                let wait = to.frame_from(from.id);
                if let Ok(got) = tokio::time::timeout(Duration::from_millis(500), wait).await {
                    assert!(got.starts_with(b"hello "));
                    return;
                }
            } else {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_peer_queue_is_reported_not_buffered() {
    const FRAME: usize = 64 * 1024;
    let mut sender = start(NetConfig {
        peer_queue_len: 4,
        ..NetConfig::loopback()
    })
    .await;
    // The receiver's caller never reads while we fill: its event channel holds 2 events.
    let mut receiver = start(NetConfig {
        event_queue_len: 2,
        ..NetConfig::loopback()
    })
    .await;
    connect(&mut sender, &mut receiver).await;

    let session = sender.session_for(receiver.id).await;
    let mut accepted = 0u32;
    let full = guard("PeerQueueFull", async {
        loop {
            let mut body = vec![0u8; FRAME];
            body[..4].copy_from_slice(&accepted.to_be_bytes());
            match sender
                .net
                .send_frame(receiver.id, session, Bytes::from(body))
            {
                Ok(()) => accepted += 1,
                Err(e) => break e,
            }
            assert!(
                accepted < 10_000,
                "{accepted} frames queued: the queue is unbounded"
            );
            // Let the writer drain what it can, so only real backpressure fills the queue.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    assert!(matches!(full, NetError::PeerQueueFull { peer } if peer == receiver.id));

    // Everything accepted is still delivered, in order, once the receiver reads again.
    for i in 0..accepted {
        let got = receiver.frame_from(sender.id).await;
        assert_eq!(got.len(), FRAME);
        assert_eq!(&got[..4], &i.to_be_bytes());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_ban_disconnects_and_explicit_peer_returns_after_it_expires() {
    let mut host = start(NetConfig {
        ban_duration: Duration::from_millis(1500),
        ..NetConfig::loopback()
    })
    .await;
    // The guest knows the host only from its config and redials it with backoff.
    let mut guest = start(NetConfig {
        peers: vec![host.addr.clone()],
        reconnect_base: Duration::from_millis(100),
        reconnect_cap: Duration::from_millis(400),
        jitter_seed: Some(1),
        ..NetConfig::loopback()
    })
    .await;
    guest.connected_to(host.id).await;
    host.connected_to(guest.id).await;

    host.net
        .disconnect_and_ban(guest.id, "sent a sync message for an unknown document")
        .await
        .unwrap();
    let reason = host
        .wait_for("PeerMisbehaved", |e| match e {
            NetEvent::PeerMisbehaved { peer, reason } if *peer == guest.id => Some(reason.clone()),
            _ => None,
        })
        .await;
    assert!(matches!(reason, Misbehaviour::Engine(ref r) if r.contains("unknown document")));
    guest
        .wait_for("PeerDisconnected", |e| {
            matches!(e, NetEvent::PeerDisconnected { peer, .. } if *peer == host.id).then_some(())
        })
        .await;
    // Redials are refused during the ban, then succeed.
    host.wait_for("ConnectionDenied", |e| {
        matches!(e, NetEvent::ConnectionDenied { peer } if *peer == guest.id).then_some(())
    })
    .await;
    guest.connected_to(host.id).await;
    host.connected_to(guest.id).await;
    let session = guest.session_for(host.id).await;
    guest
        .net
        .send_frame(host.id, session, Bytes::from_static(b"back"))
        .unwrap();
    assert_eq!(&host.frame_from(guest.id).await[..], b"back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_frame_checks_size_and_connection() {
    let a = start(NetConfig {
        max_frame_size: 16,
        ..NetConfig::loopback()
    })
    .await;
    let stranger = PeerId::random();
    assert!(matches!(
        a.net
            .send_frame(stranger, SessionId::from_u64(0), Bytes::from(vec![0; 17])),
        Err(NetError::FrameTooLarge { len: 17, max: 16 })
    ));
    assert!(matches!(
        a.net
            .send_frame(stranger, SessionId::from_u64(0), Bytes::from_static(b"hi")),
        Err(NetError::PeerNotConnected { .. })
    ));
    assert_eq!(a.net.listen_addrs().await.unwrap(), vec![a.addr.clone()]);
    a.net.shutdown().await.unwrap();
    assert!(matches!(
        a.net.peers().await,
        Err(NetError::EventLoopClosed)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_carries_the_sync_stream_without_a_team_key() {
    let quic = || NetConfig {
        listen_addrs: vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap()],
        ..NetConfig::loopback()
    };
    let mut a = start(quic()).await;
    let mut b = start(quic()).await;
    connect(&mut a, &mut b).await;
    let session = a.session_for(b.id).await;
    send(&a.net, b.id, session, Bytes::from_static(b"over quic")).await;
    assert_eq!(&b.frame_from(a.id).await[..], b"over quic");
    let peers = b.net.peers().await.unwrap();
    assert_eq!(peers[0].transport.as_str(), "quic");
}

/// Another libp2p application on the LAN (identify, no sync protocol) is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_without_the_sync_protocol_are_disconnected() {
    let mut node = start(NetConfig::loopback()).await;
    let other_key = Keypair::generate_ed25519();
    let other_id = other_key.public().to_peer_id();
    let mut other = SwarmBuilder::with_existing_identity(other_key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|key| {
            libp2p::identify::Behaviour::new(libp2p::identify::Config::new(
                "/some-other-app/1".to_owned(),
                key.public(),
            ))
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    other.dial(node.addr.clone()).unwrap();
    guard("the other app to be disconnected", async {
        let mut established = false;
        loop {
            match other.select_next_some().await {
                libp2p::swarm::SwarmEvent::ConnectionEstablished { .. } => established = true,
                libp2p::swarm::SwarmEvent::ConnectionClosed {
                    num_established: 0, ..
                } if established => break,
                _ => {}
            }
        }
    })
    .await;
    assert!(
        node.drain()
            .iter()
            .all(|e| !matches!(e, NetEvent::PeerConnected { peer, .. } if *peer == other_id))
    );
    guard("the node to forget the other app", async {
        while !node.net.peers().await.unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// A leader that keeps replacing its sync stream is banned rather than served forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_churning_sync_streams_is_banned() {
    let victim_key = Keypair::generate_ed25519();
    let victim_id = victim_key.public().to_peer_id();
    // The rogue must be the leader (lower peer id) for its streams to be accepted.
    let rogue_key = loop {
        let key = Keypair::generate_ed25519();
        if key.public().to_peer_id() < victim_id {
            break key;
        }
    };
    let rogue_id = rogue_key.public().to_peer_id();
    let mut victim = start_with(NetConfig::loopback(), victim_key).await;
    let mut rogue = SwarmBuilder::with_existing_identity(rogue_key)
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|_| libp2p_stream::Behaviour::new())
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    let mut control = rogue.behaviour().new_control();
    rogue.dial(victim.addr.clone()).unwrap();
    let (connected_tx, connected) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut connected_tx = Some(connected_tx);
        loop {
            if let libp2p::swarm::SwarmEvent::ConnectionEstablished { .. } =
                rogue.select_next_some().await
                && let Some(tx) = connected_tx.take()
            {
                let _ = tx.send(());
            }
        }
    });
    tokio::spawn(async move {
        // Opening before the connection is up would make libp2p-stream dial by id alone.
        let _ = connected.await;
        // libp2p-stream drops inbound streams the victim has not yet taken, so a burst
        // may count as one; paced opens are each delivered. Keep going until banned.
        let mut held = Vec::new();
        for _ in 0..1_000 {
            match control.open_stream(victim_id, SYNC_PROTOCOL).await {
                Ok(stream) => held.push(stream),
                Err(_) => break,
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(GUARD).await;
    });
    let (peer, reason) = victim
        .wait_for("PeerMisbehaved", |e| match e {
            NetEvent::PeerMisbehaved { peer, reason } => Some((*peer, reason.clone())),
            _ => None,
        })
        .await;
    assert_eq!(peer, rogue_id);
    assert_eq!(reason, Misbehaviour::StreamChurn);
}

/// The stream-addressing bug: a frame the caller meant for a stream that has since been
/// replaced must not go out on the replacement (the remote engine would see an
/// out-of-protocol message on a fresh session and ban us).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_for_a_replaced_session_is_dropped_not_sent_on_its_replacement() {
    let mut host = start(NetConfig::loopback()).await;
    let mut guest = start(NetConfig {
        peers: vec![host.addr.clone()],
        reconnect_base: Duration::from_millis(50),
        reconnect_cap: Duration::from_millis(200),
        jitter_seed: Some(2),
        ..NetConfig::loopback()
    })
    .await;
    let opened = |peer: PeerId| {
        move |e: &NetEvent| match e {
            NetEvent::PeerConnected {
                peer: p, session, ..
            } if *p == peer => Some(*session),
            _ => None,
        }
    };
    let old = guest.wait_for("first session", opened(host.id)).await;
    host.connected_to(guest.id).await;

    // A plain disconnect: no ban, and the guest redials its explicit peer.
    host.net.disconnect(guest.id).await.unwrap();
    let ended = guest
        .wait_for("PeerDisconnected", |e| match e {
            NetEvent::PeerDisconnected { peer, session } if *peer == host.id => Some(*session),
            _ => None,
        })
        .await;
    assert_eq!(ended, old);
    let new = guest.wait_for("second session", opened(host.id)).await;
    assert_ne!(old, new, "session ids are never reused");

    let stale = guest
        .net
        .send_frame(host.id, old, Bytes::from_static(b"for the old session"));
    assert!(
        matches!(stale, Err(NetError::StaleSession { peer, session }) if peer == host.id && session == old),
        "{stale:?}"
    );
    guest
        .net
        .send_frame(host.id, new, Bytes::from_static(b"fresh"))
        .unwrap();
    assert_eq!(&host.frame_from(guest.id).await[..], b"fresh");
    // Nothing else arrived, nobody was banned, and the host's view names the new stream.
    assert!(host.drain().iter().all(|e| !matches!(
        e,
        NetEvent::Frame { .. }
            | NetEvent::PeerMisbehaved { .. }
            | NetEvent::ConnectionDenied { .. }
    )));
    assert_eq!(guest.session_for(host.id).await, new);
}

/// Sends `frames` frames of `size` bytes from `from` to `to` and checks, as each one
/// arrives, that the bytes so far did not come faster than `rate` allows after the
/// budget's first burst. A lower bound on the time taken, so a slow machine cannot fail
/// it; only a budget that lets too much through can.
async fn within_budget(from: &mut Node, to: &mut Node, rate: u64, frames: usize, size: usize) {
    let burst = (rate / 4).max(16 * 1024) as f64;
    let session = from.session_for(to.id).await;
    let start = tokio::time::Instant::now();
    for i in 0..frames {
        send(&from.net, to.id, session, Bytes::from(vec![i as u8; size])).await;
    }
    let mut so_far = 0usize;
    for i in 0..frames {
        let frame = to.frame_from(from.id).await;
        assert_eq!(frame[0], i as u8, "frames arrive in order");
        so_far += frame.len();
        let least = ((so_far as f64 - burst) / rate as f64).max(0.0);
        let took = start.elapsed().as_secs_f64();
        assert!(
            took + 0.01 >= least,
            "{so_far} bytes arrived after {took:.3} s: faster than {rate} B/s allows ({least:.3} s)"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sync_budget_holds_what_a_device_sends_and_what_it_receives() {
    const RATE: u64 = 64 * 1024;
    let limited = || NetConfig {
        max_rate: Some(RATE),
        ..NetConfig::loopback()
    };
    // Sending: the limited node uploads 160 KiB.
    let mut slow = start(limited()).await;
    let mut fast = start(NetConfig::loopback()).await;
    connect(&mut slow, &mut fast).await;
    within_budget(&mut slow, &mut fast, RATE, 10, 16 * 1024).await;
    // Receiving: an unlimited peer sends the limited one 160 KiB; the limited one's
    // reading holds the sender back.
    let mut receiver = start(limited()).await;
    let mut sender = start(NetConfig::loopback()).await;
    connect(&mut sender, &mut receiver).await;
    within_budget(&mut sender, &mut receiver, RATE, 10, 16 * 1024).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_incoming_cap_are_refused_until_one_closes() {
    let mut a = start(NetConfig {
        max_incoming_connections: 2,
        ..NetConfig::loopback()
    })
    .await;
    let mut b = start(NetConfig::loopback()).await;
    let mut c = start(NetConfig::loopback()).await;
    let d = start(NetConfig::loopback()).await;
    connect(&mut b, &mut a).await;
    connect(&mut c, &mut a).await;
    // A third device's connection is closed by A while two are open (the dial itself
    // may report success: A refuses only once the handshake is done)...
    let _ = d.net.dial(a.addr.clone()).await;
    let connected_to_a = |peers: Vec<peerdoc_net::PeerInfo>| peers.iter().any(|p| p.peer == a.id);
    guard("A to close the third device's connection", async {
        while connected_to_a(d.net.peers().await.unwrap()) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    // ...and the two keep working.
    round_trip(&mut b, &mut a).await;
    round_trip(&mut c, &mut a).await;
    let at_a: BTreeSet<PeerId> = a
        .net
        .peers()
        .await
        .unwrap()
        .iter()
        .map(|p| p.peer)
        .collect();
    assert_eq!(at_a, BTreeSet::from([b.id, c.id]));
    // Once one leaves, the third gets in and gets a sync stream.
    b.net.shutdown().await.unwrap();
    guard("the third device to get in", async {
        loop {
            let _ = d.net.dial(a.addr.clone()).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            if d.net
                .peers()
                .await
                .unwrap()
                .iter()
                .any(|p| p.peer == a.id && p.session.is_some())
            {
                break;
            }
        }
    })
    .await;
}
