//! The dial policy under simulated time: departures, returns, bans, bounds.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::*;

const PING_MS: u64 = 5_000;

fn config() -> DialPolicyConfig {
    DialPolicyConfig::from_net_config(&crate::NetConfig::default())
}

/// Two peer ids, lower (leader) first.
fn pair() -> (PeerId, PeerId) {
    let (a, b) = (PeerId::random(), PeerId::random());
    if a < b { (a, b) } else { (b, a) }
}

fn addr(i: u8) -> Multiaddr {
    format!("/ip4/198.18.0.{i}/tcp/4100").parse().unwrap()
}

fn dials(actions: &[DialAction]) -> Vec<PeerId> {
    actions
        .iter()
        .filter_map(|a| match a {
            DialAction::DialPeer { peer, .. } => Some(*peer),
            _ => None,
        })
        .collect()
}

#[test]
fn defaults_detect_a_dead_link_within_ten_seconds() {
    let c = config();
    assert_eq!(c.dead_after_ms, 10_000);
    assert!(c.lan_backoff.cap_ms <= LAN_REDIAL_CAP_MS);
    assert_eq!(c.follower_grace_ms, 1_000);
}

#[test]
fn a_silent_peer_is_severed_after_dead_after_and_not_before() {
    let (local, remote) = pair();
    let mut policy = DialPolicy::new(local, config(), [], 0);
    policy.connected(remote, Some(addr(2)), None, 0);
    // Pongs every 5 s keep it alive for a minute.
    let mut now = 0;
    while now < 60_000 {
        now += PING_MS;
        policy.heard_from(&remote, now);
        assert!(policy.poll(now).is_empty(), "{now}");
    }
    // The link dies right after the last pong.
    let last = now;
    assert_eq!(policy.next_wakeup_ms(), Some(last + 10_000));
    assert!(policy.poll(last + 9_999).is_empty());
    assert_eq!(
        policy.poll(last + 10_000),
        vec![DialAction::Sever { peer: remote }]
    );
    assert!(!policy.is_connected(&remote));
    assert!(
        policy.poll(last + 20_000).is_empty(),
        "severed once, and no redial before the connection is gone"
    );
}

#[test]
fn a_failed_ping_severs_at_once_and_an_exempt_peer_is_never_severed() {
    let (local, remote) = pair();
    let other = PeerId::random();
    let mut policy = DialPolicy::new(local, config(), [], 0);
    policy.connected(remote, None, None, 0);
    assert!(policy.ping_failed(&remote));
    assert!(!policy.ping_failed(&remote), "already severing");
    policy.connected(other, None, None, 0);
    policy.liveness_exempt(&other);
    assert!(
        !policy
            .poll(3_600_000)
            .contains(&DialAction::Sever { peer: other })
    );
}

/// Either side redials a remembered peer after its connection went away, the follower
/// after its grace, and neither backs off beyond the LAN cap while the peer is away.
#[test]
fn both_sides_keep_redialing_a_departed_peer_within_the_lan_cap() {
    let (leader, follower) = pair();
    for (local, remote) in [(leader, follower), (follower, leader)] {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let c = config();
        let mut policy = DialPolicy::new(local, c, [], 0);
        policy.discovered(remote, vec![addr(2)], 0);
        let first = policy.poll(c.follower_grace_ms);
        assert_eq!(dials(&first), vec![remote]);
        policy.connected(remote, Some(addr(2)), None, c.follower_grace_ms);
        policy.disconnected(&remote, 20_000, &mut rng);
        policy.expired(&remote, 20_000);
        // Away for a minute: every dial fails; gaps stay under the cap (+ jitter).
        let mut now = 20_000;
        let mut last_dial = now;
        let mut count = 0;
        while now < 80_000 {
            now += 100;
            for peer in dials(&policy.poll(now)) {
                assert_eq!(peer, remote);
                assert!(
                    now - last_dial <= LAN_REDIAL_CAP_MS * 5 / 4 + 1_000,
                    "{now}"
                );
                last_dial = now;
                count += 1;
                policy.dial_failed(&peer, now, &mut rng);
            }
        }
        assert!(count >= 10, "kept dialing: {count}");
        // It comes back: the next dial connects.
        let back = loop {
            now += 100;
            if dials(&policy.poll(now)) == vec![remote] {
                break now;
            }
        };
        assert!(back - 80_000 <= LAN_REDIAL_CAP_MS * 5 / 4 + 100);
        policy.connected(remote, Some(addr(2)), None, back);
        assert!(policy.is_connected(&remote));
    }
}

#[test]
fn rediscovery_resets_the_backoff_and_the_follower_waits_only_its_grace() {
    let (leader, follower) = pair();
    for (local, remote, grace) in [(leader, follower, 0), (follower, leader, 1_000)] {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut policy = DialPolicy::new(local, config(), [], 0);
        policy.discovered(remote, vec![addr(2)], 0);
        let mut now = 0;
        // Many failures: the backoff is at its cap.
        for _ in 0..20 {
            now = policy.next_wakeup_ms().unwrap();
            assert_eq!(dials(&policy.poll(now)), vec![remote]);
            policy.dial_failed(&remote, now, &mut rng);
        }
        policy.expired(&remote, now);
        let seen = now + 1;
        policy.discovered(remote, vec![addr(2)], seen);
        assert_eq!(policy.next_wakeup_ms(), Some(seen + grace));
        if grace > 0 {
            assert!(dials(&policy.poll(seen + grace - 1)).is_empty());
        }
        assert_eq!(dials(&policy.poll(seen + grace)), vec![remote]);
    }
}

#[test]
fn a_banned_peer_is_not_dialed_until_the_ban_ends() {
    let (local, remote) = pair();
    let c = config();
    let mut policy = DialPolicy::new(local, c, [(addr(2), Some(remote))], 0);
    policy.ban(remote, 0);
    policy.discovered(remote, vec![addr(2)], 0);
    assert!(policy.is_banned(&remote));
    assert!(policy.poll(c.ban_ms - 1).is_empty());
    let actions = policy.poll(c.ban_ms);
    assert!(actions.contains(&DialAction::Unban { peer: remote }));
    assert_eq!(dials(&actions), vec![remote]);
    assert!(
        !actions
            .iter()
            .any(|a| matches!(a, DialAction::DialExplicit { .. })),
        "one dial to a peer at a time: {actions:?}"
    );
}

#[test]
fn a_forgotten_peer_is_not_redialed_until_discovered_again() {
    let (local, remote) = pair();
    let mut policy = DialPolicy::new(local, config(), [], 0);
    policy.discovered(remote, vec![addr(2)], 0);
    assert_eq!(dials(&policy.poll(0)), vec![remote]);
    policy.forget(&remote);
    assert!(dials(&policy.poll(60_000)).is_empty());
    policy.discovered(remote, vec![addr(2)], 60_000);
    assert_eq!(dials(&policy.poll(60_000)), vec![remote]);
}

#[test]
fn a_foreign_peer_is_not_dialed() {
    let (local, remote) = pair();
    let mut policy = DialPolicy::new(local, config(), [], 0);
    policy.foreign(remote, 0);
    policy.discovered(remote, vec![addr(2)], 0);
    assert!(dials(&policy.poll(60_000)).is_empty());
}

#[test]
fn explicit_peers_back_off_exponentially_and_redial_soon_after_a_disconnect() {
    let (local, remote) = pair();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let c = config();
    let mut policy = DialPolicy::new(local, c, [(addr(9), None)], 0);
    let mut now = 0;
    let mut gaps = Vec::new();
    for _ in 0..8 {
        let actions = policy.poll(now);
        assert!(matches!(
            actions[..],
            [DialAction::DialExplicit { index: 0, .. }]
        ));
        policy.explicit_dial_failed(0, now, &mut rng);
        let next = policy.next_wakeup_ms().unwrap();
        gaps.push(next - now);
        now = next;
    }
    assert!(gaps[0] <= 625 && gaps[5] >= 12_000, "{gaps:?}");
    assert!(gaps.iter().all(|g| *g <= 37_500), "{gaps:?}");
    policy.poll(now);
    policy.connected(remote, Some(addr(9)), Some(0), now);
    policy.heard_from(&remote, now + 600_000);
    assert!(policy.poll(now + 600_000).is_empty(), "connected: no dial");
    policy.disconnected(&remote, now + 600_000, &mut rng);
    let next = policy.next_wakeup_ms().unwrap() - (now + 600_000);
    assert!(next <= 1_250, "redial soon after a disconnect: {next}");
}

#[test]
fn memory_stays_bounded_and_departed_peers_are_forgotten() {
    let local = PeerId::random();
    let c = config();
    let mut policy = DialPolicy::new(local, c, [], 0);
    let peers: Vec<PeerId> = (0..MAX_PEERS + 100).map(|_| PeerId::random()).collect();
    for (i, peer) in peers.iter().enumerate() {
        let addrs = (0..20).map(|j| addr((i + j) as u8)).collect();
        policy.discovered(*peer, addrs, 0);
        policy.expired(peer, 0);
    }
    assert!(policy.peers.len() <= MAX_PEERS);
    assert!(policy.peers.values().all(|r| r.addrs.len() <= MAX_ADDRS));
    policy.poll(c.remember_ms + 1);
    assert!(!peers.iter().any(|p| policy.remembers(p)));
}

/// Two devices, simulated: both policies, a link that can be cut, mDNS that expires
/// after 20 s and answers again a second after the heal, pings every 5 s, and
/// connections that linger on a side (as a dead TCP connection does) until that side
/// severs them. One device leaves for 60 s while the other stays; whichever of the
/// two has the lower peer id, both are connected again within two seconds of the heal.
#[test]
fn a_device_returning_after_a_minute_reconnects_within_two_seconds_in_both_id_orders() {
    for returning_is_leader in [true, false] {
        for seed in 0..20 {
            let gap = simulate_absence(returning_is_leader, seed);
            assert!(
                gap <= 2_000,
                "returning leader {returning_is_leader}, seed {seed}: reconnected {gap} ms after the heal"
            );
        }
    }
}

struct Device {
    id: PeerId,
    policy: DialPolicy,
    /// This side still holds a connection (live or not).
    holds: bool,
    /// mDNS currently lists the other device.
    sees: bool,
    /// When mDNS last heard the other device.
    heard_ms: u64,
}

/// Returns how long after the heal both sides held a live connection again.
fn simulate_absence(returning_is_leader: bool, seed: u64) -> u64 {
    const STEP: u64 = 100;
    const TTL: u64 = 20_000;
    const CUT_AT: u64 = 30_000;
    const HEAL_AT: u64 = 90_000;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (leader, follower) = pair();
    let (returning, staying) = if returning_is_leader {
        (leader, follower)
    } else {
        (follower, leader)
    };
    let device = |id| Device {
        id,
        policy: DialPolicy::new(id, config(), [], 0),
        holds: false,
        sees: false,
        heard_ms: 0,
    };
    let mut devs = [device(staying), device(returning)];
    // A live connection: both hold one made while the link was up, since the last cut.
    let mut live = false;
    let mut now = 0;
    let mut reconnected = None;
    while now < HEAL_AT + 30_000 && reconnected.is_none() {
        now += STEP;
        let link_up = !(CUT_AT..HEAL_AT).contains(&now);
        if !link_up {
            live = false;
        }
        // mDNS: a query a second, answered while the link is up; entries expire.
        for i in 0..2 {
            let other = devs[1 - i].id;
            let d = &mut devs[i];
            if link_up && now % 1_000 == 0 {
                d.heard_ms = now;
                if !d.sees {
                    d.sees = true;
                    d.policy.discovered(other, vec![addr(1 + i as u8)], now);
                }
            }
            if d.sees && now - d.heard_ms >= TTL {
                d.sees = false;
                d.policy.expired(&other, now);
            }
        }
        // Pings every 5 s over a live connection.
        if live && now % PING_MS == 0 {
            let ids = [devs[0].id, devs[1].id];
            devs[0].policy.heard_from(&ids[1], now);
            devs[1].policy.heard_from(&ids[0], now);
        }
        for i in 0..2 {
            let other = devs[1 - i].id;
            let actions = devs[i].policy.poll(now);
            for action in actions {
                match action {
                    DialAction::DialPeer { peer, .. } => {
                        assert_eq!(peer, other);
                        if devs[i].holds && devs[1 - i].holds && live {
                            devs[i].policy.dial_skipped(&peer, now, &mut rng);
                        } else if link_up {
                            live = true;
                            let me = devs[i].id;
                            devs[i].holds = true;
                            devs[i].policy.connected(other, Some(addr(9)), None, now);
                            devs[1 - i].holds = true;
                            devs[1 - i].policy.connected(me, None, None, now);
                        } else {
                            devs[i].policy.dial_failed(&peer, now, &mut rng);
                        }
                    }
                    DialAction::Sever { peer } => {
                        assert_eq!(peer, other);
                        devs[i].holds = false;
                        devs[i].policy.disconnected(&peer, now, &mut rng);
                        if live {
                            // Severing a live connection closes it for the other side too.
                            live = false;
                            let me = devs[i].id;
                            devs[1 - i].holds = false;
                            devs[1 - i].policy.disconnected(&me, now, &mut rng);
                        }
                    }
                    DialAction::DialExplicit { .. } | DialAction::Unban { .. } => {}
                }
            }
        }
        if now >= HEAL_AT && live {
            let ids = [devs[0].id, devs[1].id];
            if devs[0].policy.is_connected(&ids[1]) && devs[1].policy.is_connected(&ids[0]) {
                reconnected = Some(now - HEAL_AT);
            }
        }
    }
    reconnected.unwrap_or(u64::MAX)
}

fn explicit_dials(actions: &[DialAction]) -> Vec<Multiaddr> {
    actions
        .iter()
        .filter_map(|a| match a {
            DialAction::DialExplicit { addr, .. } => Some(addr.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn peers_added_at_run_time_are_dialed_until_removed() {
    let (local, _) = pair();
    let mut policy = DialPolicy::new(local, config(), [], 0);
    assert!(policy.poll(0).is_empty());
    assert!(policy.add_explicit(addr(7), None, 100));
    assert!(!policy.add_explicit(addr(7), None, 100), "added twice");
    assert_eq!(explicit_dials(&policy.poll(100)), [addr(7)]);
    assert_eq!(policy.explicit_addrs(), [addr(7)]);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    policy.explicit_dial_failed(0, 200, &mut rng);
    assert!(policy.remove_explicit(&addr(7)));
    assert!(!policy.remove_explicit(&addr(7)));
    assert!(policy.explicit_addrs().is_empty());
    for now in [5_000, 60_000, 600_000] {
        assert!(explicit_dials(&policy.poll(now)).is_empty(), "{now}");
    }
    // Added again, it is dialed again at once.
    assert!(policy.add_explicit(addr(7), None, 600_000));
    assert_eq!(explicit_dials(&policy.poll(600_000)), [addr(7)]);
}
