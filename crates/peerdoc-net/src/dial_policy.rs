//! [`DialPolicy`]: whom to dial and when, when a link is dead, and when a ban ends.
//!
//! A sans-IO state machine, like the sync engine: the event loop reports what happened
//! (a peer discovered or expired, a dial started, failed or connected, a connection
//! lost, a sign of life, a ban) with the current time in milliseconds, and asks
//! [`DialPolicy::poll`] what to do now ([`DialAction`]) and [`DialPolicy::next_wakeup_ms`]
//! when to ask again. Randomness (backoff jitter) is an input too. The unit tests below
//! drive departures and returns under simulated time.
//!
//! The rules:
//!
//! - **Either side dials.** A peer we know of (configured, found by mDNS, or remembered
//!   after mDNS lost it) that we are not connected to is dialed by us, whatever the
//!   order of the two peer ids. The follower (higher peer id) waits
//!   [`DialPolicyConfig::follower_grace_ms`] first after a discovery or a disconnect, so
//!   that in the common case only the leader dials and no duplicate connection is made;
//!   a returning device never waits longer than that for a lower-id peer. Duplicates
//!   that still happen are resolved by the event loop (the leader keeps one).
//! - **Backoff** is `peerdoc_core::endpoint`'s: exponential with jitter, per peer. A
//!   discovery (mDNS heard the peer again) resets it: that is fresh evidence the peer is
//!   there. LAN peers back off to at most [`LAN_REDIAL_CAP_MS`], so a device that returns
//!   without being rediscovered is still found within seconds.
//! - **Liveness.** A connected peer not heard from (pong or frame) for
//!   [`DialPolicyConfig::dead_after_ms`] is dead: [`DialAction::Sever`]. So is one whose
//!   ping failed. Peers that do not speak ping are exempt.
//! - **Bans and foreign peers** are never dialed until their time is up.
//! - **Bounded:** at most [`MAX_PEERS`] peers are remembered, at most [`MAX_ADDRS`]
//!   addresses each; a peer neither connected nor discovered is forgotten after
//!   [`DialPolicyConfig::remember_ms`].

use std::collections::BTreeMap;

use libp2p::{Multiaddr, PeerId};
use peerdoc_core::endpoint::{EndpointPolicy, EndpointState};
use rand::RngCore;

use crate::swarm::is_leader;

/// Most peers the policy keeps records of.
pub(crate) const MAX_PEERS: usize = 1024;
/// Most addresses remembered per peer.
pub(crate) const MAX_ADDRS: usize = 8;
/// Longest redial delay for a peer on the LAN (discovered or remembered).
pub(crate) const LAN_REDIAL_CAP_MS: u64 = 5_000;

/// The policy's settings, derived from [`crate::NetConfig`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct DialPolicyConfig {
    /// Backoff of explicitly configured peers.
    pub(crate) explicit_backoff: EndpointPolicy,
    /// Backoff of LAN peers (its cap at most [`LAN_REDIAL_CAP_MS`]).
    pub(crate) lan_backoff: EndpointPolicy,
    /// How long the follower of a pair waits before dialing after a discovery or a
    /// disconnect, giving the leader's dial the right of way.
    pub(crate) follower_grace_ms: u64,
    /// A connected peer not heard from for this long is dead.
    pub(crate) dead_after_ms: u64,
    /// How long a misbehaving peer is not dialed and refused.
    pub(crate) ban_ms: u64,
    /// How long a peer that does not speak the sync protocol is not dialed.
    pub(crate) foreign_ms: u64,
    /// How long a peer that left (disconnected, no longer discovered) is remembered and
    /// redialed.
    pub(crate) remember_ms: u64,
}

impl DialPolicyConfig {
    /// The policy for `config`.
    pub(crate) fn from_net_config(config: &crate::NetConfig) -> Self {
        let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let base_ms = ms(config.reconnect_base).max(1);
        let explicit_backoff = EndpointPolicy {
            base_ms,
            cap_ms: ms(config.reconnect_cap).max(base_ms),
            jitter: 0.25,
            // No circuit breaker: a LAN or configured peer is worth retrying at the cap.
            failure_threshold: u32::MAX,
            half_open_after_ms: ms(config.reconnect_cap).max(1),
        };
        let lan_backoff = EndpointPolicy {
            cap_ms: explicit_backoff.cap_ms.min(LAN_REDIAL_CAP_MS).max(base_ms),
            ..explicit_backoff
        };
        Self {
            explicit_backoff,
            lan_backoff,
            follower_grace_ms: base_ms.saturating_mul(2),
            dead_after_ms: ms(config.ping_interval).saturating_mul(2),
            ban_ms: ms(config.ban_duration),
            foreign_ms: ms(config.ban_duration),
            remember_ms: 10 * 60 * 1000,
        }
    }
}

/// What the event loop should do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DialAction {
    /// Dial `peer` at these addresses (plus any the swarm's behaviours know).
    DialPeer {
        /// Whom.
        peer: PeerId,
        /// Where, as far as we know.
        addrs: Vec<Multiaddr>,
    },
    /// Dial configured address number `index`.
    DialExplicit {
        /// Index into [`crate::NetConfig::peers`].
        index: usize,
        /// The address.
        addr: Multiaddr,
        /// The peer id, from the address or an earlier connection.
        peer: Option<PeerId>,
    },
    /// `peer` failed its liveness check: close every connection to it now, without
    /// waiting to flush anything queued for it.
    Sever {
        /// Whom.
        peer: PeerId,
    },
    /// `peer`'s ban is over: accept its connections again.
    Unban {
        /// Whom.
        peer: PeerId,
    },
}

/// The state of our link to a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Idle,
    Dialing,
    Connected {
        last_heard_ms: u64,
    },
    /// Declared dead; waiting for its connections to be gone.
    Severing,
}

#[derive(Debug)]
struct PeerRecord {
    addrs: Vec<Multiaddr>,
    /// mDNS currently lists it.
    discovered: bool,
    /// mDNS has found it at some point: a LAN peer, ours to redial. A peer that only
    /// ever reached us some other way (dialed by the embedder, a cloud peer) is redialed
    /// by whoever dialed it, on their own schedule.
    lan: bool,
    link: Link,
    backoff: EndpointState,
    /// No dial before this (the follower's grace).
    not_before_ms: u64,
    /// Forgotten at this time unless connected or discovered again.
    forget_at_ms: u64,
    /// Does not answer pings: judged by identify, not liveness.
    liveness_exempt: bool,
}

#[derive(Debug)]
struct ExplicitTarget {
    addr: Multiaddr,
    peer: Option<PeerId>,
    backoff: EndpointState,
    /// A dial of ours to it is under way.
    dialing: bool,
    /// Removed at run time (`remove_explicit`); kept so that indices stay valid.
    removed: bool,
}

/// Most explicit addresses kept (configured plus added at run time).
const MAX_EXPLICIT: usize = 256;

/// The dial, redial, liveness and ban policy. See the module docs.
#[derive(Debug)]
pub(crate) struct DialPolicy {
    local: PeerId,
    config: DialPolicyConfig,
    peers: BTreeMap<PeerId, PeerRecord>,
    explicit: Vec<ExplicitTarget>,
    bans: BTreeMap<PeerId, u64>,
    foreign: BTreeMap<PeerId, u64>,
}

impl DialPolicy {
    /// A policy for `local`, dialing `explicit` addresses from `now_ms` on.
    pub(crate) fn new(
        local: PeerId,
        config: DialPolicyConfig,
        explicit: impl IntoIterator<Item = (Multiaddr, Option<PeerId>)>,
        now_ms: u64,
    ) -> Self {
        Self {
            local,
            config,
            peers: BTreeMap::new(),
            explicit: explicit
                .into_iter()
                .map(|(addr, peer)| ExplicitTarget {
                    addr,
                    peer,
                    backoff: EndpointState::new(now_ms),
                    dialing: false,
                    removed: false,
                })
                .collect(),
            bans: BTreeMap::new(),
            foreign: BTreeMap::new(),
        }
    }

    /// Starts dialing `addr` (kept dialing with backoff, like a configured peer).
    /// Returns false when it is already dialed, or when the list is full.
    pub(crate) fn add_explicit(
        &mut self,
        addr: Multiaddr,
        peer: Option<PeerId>,
        now_ms: u64,
    ) -> bool {
        if let Some(target) = self.explicit.iter_mut().find(|t| t.addr == addr) {
            let revived = target.removed;
            target.removed = false;
            target.backoff = EndpointState::new(now_ms);
            return revived;
        }
        if self.explicit.iter().filter(|t| !t.removed).count() >= MAX_EXPLICIT {
            return false;
        }
        self.explicit.push(ExplicitTarget {
            addr,
            peer,
            backoff: EndpointState::new(now_ms),
            dialing: false,
            removed: false,
        });
        true
    }

    /// Stops dialing `addr`; returns whether it was dialed.
    pub(crate) fn remove_explicit(&mut self, addr: &Multiaddr) -> bool {
        self.explicit
            .iter_mut()
            .find(|t| &t.addr == addr && !t.removed)
            .map(|t| t.removed = true)
            .is_some()
    }

    /// How many peers mDNS lists now.
    pub(crate) fn discovered_count(&self) -> usize {
        self.peers.values().filter(|r| r.discovered).count()
    }

    /// The addresses dialed as explicit peers now.
    pub(crate) fn explicit_addrs(&self) -> Vec<Multiaddr> {
        self.explicit
            .iter()
            .filter(|t| !t.removed)
            .map(|t| t.addr.clone())
            .collect()
    }

    /// Whether `peer` is banned now.
    pub(crate) fn is_banned(&self, peer: &PeerId) -> bool {
        self.bans.contains_key(peer)
    }

    /// Whether we hold a live connection to `peer` (as far as the policy knows).
    #[cfg(test)]
    fn is_connected(&self, peer: &PeerId) -> bool {
        self.peers
            .get(peer)
            .is_some_and(|r| matches!(r.link, Link::Connected { .. }))
    }

    /// Peers the policy remembers (for tests and diagnostics).
    #[cfg(test)]
    fn remembers(&self, peer: &PeerId) -> bool {
        self.peers.contains_key(peer)
    }

    fn grace(&self, peer: &PeerId) -> u64 {
        if is_leader(&self.local, peer) {
            0
        } else {
            self.config.follower_grace_ms
        }
    }

    /// The record of `peer`, made if there is room (evicting the longest-forgotten
    /// idle, undiscovered peer when full).
    fn record(&mut self, peer: PeerId, now_ms: u64) -> Option<&mut PeerRecord> {
        if !self.peers.contains_key(&peer) {
            if self.peers.len() >= MAX_PEERS {
                let victim = self
                    .peers
                    .iter()
                    .filter(|(_, r)| r.link == Link::Idle && !r.discovered)
                    .min_by_key(|(_, r)| r.forget_at_ms)
                    .map(|(p, _)| *p)?;
                self.peers.remove(&victim);
            }
            self.peers.insert(
                peer,
                PeerRecord {
                    addrs: Vec::new(),
                    discovered: false,
                    lan: false,
                    link: Link::Idle,
                    backoff: EndpointState::new(now_ms),
                    not_before_ms: now_ms,
                    forget_at_ms: now_ms.saturating_add(self.config.remember_ms),
                    liveness_exempt: false,
                },
            );
        }
        self.peers.get_mut(&peer)
    }

    /// mDNS found `peer` at `addrs` (or found it again after it expired).
    pub(crate) fn discovered(&mut self, peer: PeerId, addrs: Vec<Multiaddr>, now_ms: u64) {
        if peer == self.local {
            return;
        }
        let grace = self.grace(&peer);
        let Some(record) = self.record(peer, now_ms) else {
            return;
        };
        record.discovered = true;
        record.lan = true;
        for addr in addrs {
            remember_addr(&mut record.addrs, addr);
        }
        if record.link == Link::Idle {
            // Fresh evidence that the peer is there: forget the backoff.
            record.backoff = EndpointState::new(now_ms);
            record.not_before_ms = now_ms.saturating_add(grace);
        }
    }

    /// mDNS no longer lists `peer`.
    pub(crate) fn expired(&mut self, peer: &PeerId, now_ms: u64) {
        let remember = self.config.remember_ms;
        if let Some(record) = self.peers.get_mut(peer) {
            record.discovered = false;
            record.forget_at_ms = now_ms.saturating_add(remember);
        }
    }

    /// What to do at `now_ms`: the dials that are due, dead links to sever, bans that
    /// ended. A dial returned here counts as started.
    pub(crate) fn poll(&mut self, now_ms: u64) -> Vec<DialAction> {
        let mut actions = Vec::new();
        let ended: Vec<PeerId> = self
            .bans
            .iter()
            .filter(|(_, until)| **until <= now_ms)
            .map(|(p, _)| *p)
            .collect();
        for peer in ended {
            self.bans.remove(&peer);
            actions.push(DialAction::Unban { peer });
        }
        self.foreign.retain(|_, until| *until > now_ms);
        self.peers
            .retain(|_, r| r.discovered || r.link != Link::Idle || r.forget_at_ms > now_ms);
        let dead_after = self.config.dead_after_ms;
        for (peer, record) in &mut self.peers {
            match record.link {
                Link::Connected { last_heard_ms }
                    if !record.liveness_exempt
                        && now_ms.saturating_sub(last_heard_ms) >= dead_after =>
                {
                    record.link = Link::Severing;
                    actions.push(DialAction::Sever { peer: *peer });
                }
                Link::Idle
                    if record.lan
                        && !self.bans.contains_key(peer)
                        && !self.foreign.contains_key(peer)
                        && now_ms >= record.not_before_ms
                        && record.backoff.may_attempt(now_ms) =>
                {
                    record.backoff.on_attempt(now_ms);
                    record.link = Link::Dialing;
                    actions.push(DialAction::DialPeer {
                        peer: *peer,
                        addrs: record.addrs.clone(),
                    });
                }
                _ => {}
            }
        }
        for (index, target) in self.explicit.iter_mut().enumerate() {
            let busy = target.peer.is_some_and(|peer| {
                self.bans.contains_key(&peer)
                    || self.peers.get(&peer).is_some_and(|r| r.link != Link::Idle)
            });
            if target.removed || busy || target.dialing || !target.backoff.may_attempt(now_ms) {
                continue;
            }
            target.backoff.on_attempt(now_ms);
            target.dialing = true;
            actions.push(DialAction::DialExplicit {
                index,
                addr: target.addr.clone(),
                peer: target.peer,
            });
        }
        actions
    }

    /// When [`DialPolicy::poll`] next has something to do, if ever.
    pub(crate) fn next_wakeup_ms(&self) -> Option<u64> {
        let bans = self.bans.values().chain(self.foreign.values()).copied();
        let peers = self.peers.iter().filter_map(|(peer, r)| match r.link {
            Link::Connected { last_heard_ms } if !r.liveness_exempt => {
                Some(last_heard_ms.saturating_add(self.config.dead_after_ms))
            }
            Link::Idle
                if r.lan && !self.bans.contains_key(peer) && !self.foreign.contains_key(peer) =>
            {
                let dial = r.backoff.next_attempt_ms().max(r.not_before_ms);
                Some(if r.discovered {
                    dial
                } else {
                    dial.min(r.forget_at_ms)
                })
            }
            Link::Idle => (!r.discovered).then_some(r.forget_at_ms),
            _ => None,
        });
        let explicit = self.explicit.iter().filter_map(|t| {
            let busy = t
                .peer
                .is_some_and(|peer| self.peers.get(&peer).is_some_and(|r| r.link != Link::Idle));
            (!t.removed && !busy && !t.dialing && !t.backoff.is_connected())
                .then(|| t.backoff.next_attempt_ms())
        });
        bans.chain(peers).chain(explicit).min()
    }

    /// A dial returned by [`DialPolicy::poll`] could not start: libp2p is already
    /// connected to or dialing the peer. Not a failure of the peer.
    pub(crate) fn dial_skipped(&mut self, peer: &PeerId, now_ms: u64, rng: &mut dyn RngCore) {
        let policy = self.config.lan_backoff;
        if let Some(record) = self.peers.get_mut(peer)
            && record.link == Link::Dialing
        {
            record.link = Link::Idle;
            record.backoff.on_disconnected(&policy, now_ms, rng);
        }
    }

    /// Explicit dial number `index` could not start (see [`DialPolicy::dial_skipped`]).
    pub(crate) fn explicit_dial_skipped(
        &mut self,
        index: usize,
        now_ms: u64,
        rng: &mut dyn RngCore,
    ) {
        let policy = self.config.explicit_backoff;
        if let Some(target) = self.explicit.get_mut(index) {
            target.dialing = false;
            target.backoff.on_disconnected(&policy, now_ms, rng);
        }
    }

    /// A dial to `peer` failed.
    pub(crate) fn dial_failed(&mut self, peer: &PeerId, now_ms: u64, rng: &mut dyn RngCore) {
        let policy = self.config.lan_backoff;
        if let Some(record) = self.peers.get_mut(peer)
            && record.link == Link::Dialing
        {
            record.link = Link::Idle;
            record.backoff.on_failure(&policy, now_ms, rng);
        }
    }

    /// Explicit dial number `index` failed.
    pub(crate) fn explicit_dial_failed(
        &mut self,
        index: usize,
        now_ms: u64,
        rng: &mut dyn RngCore,
    ) {
        let policy = self.config.explicit_backoff;
        if let Some(target) = self.explicit.get_mut(index) {
            target.dialing = false;
            target.backoff.on_failure(&policy, now_ms, rng);
        }
    }

    /// A connection to `peer` is up. `dialed_addr` is the address we dialed, if we did
    /// (an inbound connection's remote port is ephemeral, useless for a redial);
    /// `explicit` the configured address it came from.
    pub(crate) fn connected(
        &mut self,
        peer: PeerId,
        dialed_addr: Option<Multiaddr>,
        explicit: Option<usize>,
        now_ms: u64,
    ) {
        if let Some(target) = explicit.and_then(|i| self.explicit.get_mut(i)) {
            target.peer = Some(peer);
            target.dialing = false;
        }
        for target in &mut self.explicit {
            if target.peer == Some(peer) {
                target.backoff.on_success(now_ms);
            }
        }
        let Some(record) = self.record(peer, now_ms) else {
            return;
        };
        if let Some(addr) = dialed_addr {
            remember_addr(&mut record.addrs, addr);
        }
        record.backoff.on_success(now_ms);
        match &mut record.link {
            Link::Connected { last_heard_ms } => *last_heard_ms = now_ms,
            link => {
                *link = Link::Connected {
                    last_heard_ms: now_ms,
                }
            }
        }
    }

    /// The last connection to `peer` closed.
    pub(crate) fn disconnected(&mut self, peer: &PeerId, now_ms: u64, rng: &mut dyn RngCore) {
        let grace = self.grace(peer);
        let (lan, explicit) = (self.config.lan_backoff, self.config.explicit_backoff);
        let remember = self.config.remember_ms;
        for target in &mut self.explicit {
            if target.peer == Some(*peer) && target.backoff.is_connected() {
                target.backoff.on_disconnected(&explicit, now_ms, rng);
            }
        }
        if let Some(record) = self.peers.get_mut(peer) {
            record.link = Link::Idle;
            record.backoff.on_disconnected(&lan, now_ms, rng);
            record.not_before_ms = now_ms.saturating_add(grace);
            record.forget_at_ms = now_ms.saturating_add(remember);
        }
    }

    /// A sign of life from `peer`: a pong or a frame.
    pub(crate) fn heard_from(&mut self, peer: &PeerId, now_ms: u64) {
        if let Some(PeerRecord {
            link: Link::Connected { last_heard_ms },
            ..
        }) = self.peers.get_mut(peer)
        {
            *last_heard_ms = (*last_heard_ms).max(now_ms);
        }
    }

    /// A ping to `peer` failed (no pong in time, or the ping stream could not be
    /// negotiated, which is what a dead link gives). Returns whether to sever it now.
    pub(crate) fn ping_failed(&mut self, peer: &PeerId) -> bool {
        match self.peers.get_mut(peer) {
            Some(record) if matches!(record.link, Link::Connected { .. }) => {
                record.link = Link::Severing;
                true
            }
            _ => false,
        }
    }

    /// `peer` does not speak ping: exempt it from the liveness check.
    pub(crate) fn liveness_exempt(&mut self, peer: &PeerId) {
        if let Some(record) = self.peers.get_mut(peer) {
            record.liveness_exempt = true;
        }
    }

    /// Drops what is known of `peer` unless it is connected (it left the allowlist):
    /// it is not dialed again until discovered again.
    pub(crate) fn forget(&mut self, peer: &PeerId) {
        if self
            .peers
            .get(peer)
            .is_some_and(|r| matches!(r.link, Link::Idle | Link::Dialing))
        {
            self.peers.remove(peer);
        }
    }

    /// `peer` misbehaved: do not dial it, and refuse it, for the ban duration.
    pub(crate) fn ban(&mut self, peer: PeerId, now_ms: u64) {
        self.bans
            .insert(peer, now_ms.saturating_add(self.config.ban_ms));
    }

    /// `peer` does not speak the sync protocol (another libp2p application).
    pub(crate) fn foreign(&mut self, peer: PeerId, now_ms: u64) {
        self.foreign
            .insert(peer, now_ms.saturating_add(self.config.foreign_ms));
    }
}

fn remember_addr(addrs: &mut Vec<Multiaddr>, addr: Multiaddr) {
    if let Some(pos) = addrs.iter().position(|a| *a == addr) {
        addrs.remove(pos);
    }
    // Newest first; the oldest falls off.
    addrs.insert(0, addr);
    addrs.truncate(MAX_ADDRS);
}

#[cfg(test)]
mod tests;
