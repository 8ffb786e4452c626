//! The subnet probe (`team.probe_subnet`, off unless a user turns it on): when this
//! device has been alone for a while (no member connected: multicast is blocked and
//! every address it remembers is dead), it tries the team port on each address of its
//! own subnet, slowly, the way LocalSend does. A member answering there completes the
//! team-key handshake and syncs; anything else fails the handshake and is forgotten.
//!
//! Bounded and polite:
//! - only the device's own subnet, and of it at most the /24 around the device's own
//!   address (a phone hotspot's /28 is probed as a /28: never an address the device
//!   would reach through a gateway); never loopback or link-local;
//! - one dial every [`DIAL_EVERY_MS`] (a /24 takes about a minute), at most
//!   [`MAX_DIALS_IN_FLIGHT`] at once, each given up after [`DIAL_TIMEOUT`];
//! - a sweep starts only after [`ALONE_FOR_MS`] alone (remembered addresses are dialed
//!   first) and is repeated at most every [`SWEEP_PAUSE_MS`], and only while the device
//!   is still alone. A sweep that started runs to its end even when a member answers:
//!   the others may have restarted on new addresses too, and one member is not enough
//!   to learn an address another could not publish.
//!
//! [`Sweeper`] is the schedule, with time as an input; [`spawn`] runs it.

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use peerdoc_node::Multiaddr;
use peerdoc_node::multiaddr::Protocol;

use super::TeamService;

/// How long a device is alone before it probes.
pub(crate) const ALONE_FOR_MS: u64 = 30_000;
/// One dial this often during a sweep.
pub(crate) const DIAL_EVERY_MS: u64 = 200;
/// The pause between two sweeps while the device stays alone.
pub(crate) const SWEEP_PAUSE_MS: u64 = 5 * 60_000;
/// Dials of one sweep in flight at once.
pub(crate) const MAX_DIALS_IN_FLIGHT: usize = 16;
/// A dial that has not connected by then is given up.
pub(crate) const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// The addresses a sweep tries for an interface address `ip` with prefix `prefix`: its
/// subnet, cut to the /24 around `ip` when the subnet is larger, without the subnet's
/// network and broadcast addresses, the /24's first and last, and `ip` itself. None for
/// loopback, link-local, unspecified or multicast addresses, or a subnet of one or two.
pub(crate) fn subnet_hosts(ip: Ipv4Addr, prefix: u8) -> Vec<Ipv4Addr> {
    if ip.is_loopback() || ip.is_link_local() || ip.is_unspecified() || ip.is_multicast() {
        return Vec::new();
    }
    let prefix = u32::from(prefix.clamp(24, 32));
    if prefix >= 31 {
        return Vec::new();
    }
    let mask = u32::MAX << (32 - prefix);
    let network = u32::from(ip) & mask;
    let broadcast = network | !mask;
    ((network + 1)..broadcast)
        .map(Ipv4Addr::from)
        .filter(|a| *a != ip && a.octets()[3] != 0 && a.octets()[3] != 255)
        .collect()
}

/// When to dial which address; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct Sweeper {
    pending: VecDeque<Ipv4Addr>,
    alone_since: Option<u64>,
    next_dial_ms: u64,
    last_sweep_end_ms: Option<u64>,
}

impl Sweeper {
    /// Given whether the device is alone now and, for a sweep about to start, the
    /// addresses it would try, returns the address to dial now, if any.
    pub(crate) fn poll(
        &mut self,
        now_ms: u64,
        alone: bool,
        hosts: impl FnOnce() -> Vec<Ipv4Addr>,
    ) -> Option<Ipv4Addr> {
        if !alone {
            self.alone_since = None;
        }
        if self.pending.is_empty() {
            if !alone {
                return None;
            }
            let since = *self.alone_since.get_or_insert(now_ms);
            let rested = self
                .last_sweep_end_ms
                .is_none_or(|end| now_ms.saturating_sub(end) >= SWEEP_PAUSE_MS);
            if now_ms.saturating_sub(since) < ALONE_FOR_MS || !rested {
                return None;
            }
            self.pending = hosts().into();
            if self.pending.is_empty() {
                self.last_sweep_end_ms = Some(now_ms);
                return None;
            }
            tracing::info!(
                addresses = self.pending.len(),
                "no team member found: probing this device's subnet on the team port (team.probe_subnet)"
            );
            self.next_dial_ms = now_ms;
        }
        if now_ms < self.next_dial_ms {
            return None;
        }
        self.next_dial_ms = now_ms + DIAL_EVERY_MS;
        let next = self.pending.pop_front();
        if self.pending.is_empty() {
            self.last_sweep_end_ms = Some(now_ms);
        }
        next
    }
}

/// The IPv4 addresses (with prefixes) of this device's interfaces that `listen`
/// covers: all of them for an unspecified listen address, else those listed.
fn own_subnets(listen: &[Multiaddr]) -> Vec<(Ipv4Addr, u8)> {
    let listened: Vec<Ipv4Addr> = listen
        .iter()
        .filter_map(|a| match a.iter().next() {
            Some(Protocol::Ip4(ip)) => Some(ip),
            _ => None,
        })
        .collect();
    let any = listened.iter().any(Ipv4Addr::is_unspecified);
    if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|i| match i.addr {
            if_addrs::IfAddr::V4(v4) => Some((v4.ip, v4.prefixlen)),
            if_addrs::IfAddr::V6(_) => None,
        })
        .filter(|(ip, _)| any || listened.contains(ip))
        .collect()
}

/// Runs the probe for `team` while the daemon runs.
pub(crate) fn spawn(team: Arc<TeamService>, port: u16) {
    tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        let mut sweeper = Sweeper::default();
        let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_DIALS_IN_FLIGHT));
        let mut tick = tokio::time::interval(Duration::from_millis(DIAL_EVERY_MS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now_ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
            let alone = team.alone().await;
            let node = team.node.clone();
            let listen = match (alone, sweeper.pending.is_empty()) {
                (true, true) => node
                    .status()
                    .await
                    .map(|s| s.listen_addrs)
                    .unwrap_or_default(),
                _ => Vec::new(),
            };
            let hosts = || {
                let mut hosts: Vec<Ipv4Addr> = own_subnets(&listen)
                    .into_iter()
                    .flat_map(|(ip, prefix)| subnet_hosts(ip, prefix))
                    .collect();
                hosts.sort();
                hosts.dedup();
                hosts
            };
            let Some(ip) = sweeper.poll(now_ms, alone, hosts) else {
                continue;
            };
            let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                continue;
            };
            let addr: Multiaddr = Multiaddr::empty()
                .with(Protocol::Ip4(ip))
                .with(Protocol::Tcp(port));
            tokio::spawn(async move {
                let outcome = tokio::time::timeout(DIAL_TIMEOUT, node.dial(addr.clone())).await;
                match outcome {
                    Ok(Ok(peer)) => tracing::info!(%addr, %peer, "the subnet probe found a device"),
                    Ok(Err(error)) => tracing::debug!(%addr, %error, "probe dial failed"),
                    Err(_) => tracing::debug!(%addr, "probe dial timed out"),
                }
                drop(permit);
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Ipv4Addr {
        text.parse().unwrap()
    }

    #[test]
    fn a_sweep_stays_inside_the_device_s_own_subnet_and_its_24() {
        let lan = subnet_hosts(ip("198.18.0.7"), 24);
        assert_eq!(lan.len(), 253);
        assert!(!lan.contains(&ip("198.18.0.7")));
        assert!(!lan.contains(&ip("198.18.0.0")) && !lan.contains(&ip("198.18.0.255")));
        assert!(lan.iter().all(|a| a.octets()[..3] == [198, 18, 0]));
        // A larger subnet is cut to the /24 around the device.
        let wide = subnet_hosts(ip("198.18.1.9"), 15);
        assert_eq!(wide.len(), 253);
        assert!(wide.iter().all(|a| a.octets()[..3] == [198, 18, 1]));
        // A hotspot's /28: its 14 hosts less this one, nothing through the gateway.
        let hotspot = subnet_hosts(ip("198.18.10.2"), 28);
        assert_eq!(hotspot.len(), 13);
        assert!(hotspot.iter().all(|a| (1..=14).contains(&a.octets()[3])));
        for (addr, prefix) in [
            ("127.0.0.1", 8),
            ("169.254.3.4", 16),
            ("0.0.0.0", 0),
            ("198.18.0.1", 31),
            ("198.18.0.1", 32),
        ] {
            assert!(subnet_hosts(ip(addr), prefix).is_empty(), "{addr}/{prefix}");
        }
    }

    fn hosts() -> Vec<Ipv4Addr> {
        vec![ip("198.18.0.1"), ip("198.18.0.2"), ip("198.18.0.3")]
    }

    #[test]
    fn a_sweep_waits_until_the_device_has_been_alone_then_dials_slowly() {
        let mut s = Sweeper::default();
        assert_eq!(s.poll(0, true, hosts), None);
        assert_eq!(s.poll(ALONE_FOR_MS - 1, true, hosts), None);
        let t = ALONE_FOR_MS;
        assert_eq!(s.poll(t, true, hosts), Some(ip("198.18.0.1")));
        assert_eq!(s.poll(t + DIAL_EVERY_MS - 1, true, hosts), None);
        assert_eq!(
            s.poll(t + DIAL_EVERY_MS, true, hosts),
            Some(ip("198.18.0.2"))
        );
        assert_eq!(
            s.poll(t + 2 * DIAL_EVERY_MS, true, hosts),
            Some(ip("198.18.0.3"))
        );
        // The sweep is over; the next waits its pause.
        let end = t + 2 * DIAL_EVERY_MS;
        assert_eq!(s.poll(end + DIAL_EVERY_MS, true, hosts), None);
        assert_eq!(s.poll(end + SWEEP_PAUSE_MS - 1, true, hosts), None);
        assert_eq!(
            s.poll(end + SWEEP_PAUSE_MS, true, hosts),
            Some(ip("198.18.0.1"))
        );
    }

    #[test]
    fn a_sweep_runs_to_its_end_and_the_next_needs_the_device_alone_again() {
        let mut s = Sweeper::default();
        s.poll(0, true, hosts);
        let t = ALONE_FOR_MS;
        assert_eq!(s.poll(t, true, hosts), Some(ip("198.18.0.1")));
        // A member answered: the sweep goes on, to find the others.
        assert_eq!(
            s.poll(t + DIAL_EVERY_MS, false, hosts),
            Some(ip("198.18.0.2"))
        );
        assert_eq!(
            s.poll(t + 2 * DIAL_EVERY_MS, false, hosts),
            Some(ip("198.18.0.3"))
        );
        let end = t + 2 * DIAL_EVERY_MS;
        // Connected: no new sweep, however long.
        assert_eq!(s.poll(end + 10 * SWEEP_PAUSE_MS, false, hosts), None);
        // Alone again: after 30 s alone (the pause is long over), a new sweep.
        let later = end + 10 * SWEEP_PAUSE_MS + 1;
        assert_eq!(s.poll(later, true, hosts), None);
        assert_eq!(s.poll(later + ALONE_FOR_MS - 1, true, hosts), None);
        assert_eq!(
            s.poll(later + ALONE_FOR_MS, true, hosts),
            Some(ip("198.18.0.1"))
        );
    }
}
