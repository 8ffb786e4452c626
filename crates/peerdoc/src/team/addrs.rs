//! Addresses travel with the team: each member publishes where it can be reached, and
//! every member dials the others there, so that one reachable member is enough to find
//! the rest, with or without mDNS, and after a restart.
//!
//! Each device writes its own signed record ([`SignedAddresses`]) into the membership
//! document under `addrs:<device>`, whenever its listen addresses differ from what the
//! document says. Whenever the document changes (and at start, from the stored copy),
//! every record is checked: the device's own signature, this team, a current member,
//! not this device. Their addresses are added to the transport's dialed peers (with
//! backoff, skipped while the device is connected); a device removed from the team, or
//! an address it no longer lists, is no longer dialed.
//!
//! Published addresses are the listen addresses other devices can use: never
//! unspecified ones (`0.0.0.0`), and loopback ones only when the device has no other
//! (a test or a single machine), since another device's loopback is itself.

use std::collections::{BTreeMap, BTreeSet};

use peerdoc_node::{Multiaddr, PeerId};
use peerdoc_team::{AddressBody, MAX_DEVICE_ADDRS, SignedAddresses};
use serde_json::{Map, Value};

use super::{TeamFile, TeamService, doc, now_ms};

/// Hub addresses an invite carries at most.
const MAX_HUB_ADDRS: usize = 16;

/// The membership document's keys of address records start with this.
pub(crate) const KEY_PREFIX: &str = "addrs:";

/// The addresses of `listen` worth telling other devices, each ending in `/p2p/<me>`.
pub(crate) fn publishable(listen: &[Multiaddr], me: PeerId) -> Vec<String> {
    use peerdoc_node::multiaddr::Protocol;
    fn host(addr: &Multiaddr) -> Option<Protocol<'_>> {
        addr.iter().next()
    }
    let usable: Vec<&Multiaddr> = listen
        .iter()
        .filter(|a| match host(a) {
            Some(Protocol::Ip4(ip)) => !ip.is_unspecified(),
            Some(Protocol::Ip6(ip)) => !ip.is_unspecified(),
            _ => false,
        })
        .collect();
    let loopback = |a: &&Multiaddr| match host(a) {
        Some(Protocol::Ip4(ip)) => ip.is_loopback(),
        Some(Protocol::Ip6(ip)) => ip.is_loopback(),
        _ => false,
    };
    let outside: Vec<&Multiaddr> = usable.iter().copied().filter(|a| !loopback(a)).collect();
    let chosen = if outside.is_empty() { usable } else { outside };
    let mut addrs: Vec<String> = chosen
        .into_iter()
        .map(|a| format!("{a}/p2p/{me}"))
        .collect();
    addrs.sort();
    addrs.dedup();
    addrs.truncate(MAX_DEVICE_ADDRS);
    addrs
}

/// The verified address records of every other current member in the document `map`.
pub(crate) fn member_addrs(
    file: &TeamFile,
    me: &PeerId,
    map: &Map<String, Value>,
) -> BTreeMap<PeerId, AddressBody> {
    let team = file.team.team_id();
    let membership = file.team.membership();
    let mut found = BTreeMap::new();
    for (key, value) in map {
        let Some(device) = key.strip_prefix(KEY_PREFIX) else {
            continue;
        };
        let Some(record) = value
            .as_str()
            .and_then(|text| serde_json::from_str::<SignedAddresses>(text).ok())
        else {
            continue;
        };
        let body = match record.verify(&team) {
            Ok(body) => body,
            Err(error) => {
                tracing::debug!(%device, %error, "address record ignored");
                continue;
            }
        };
        let current = membership
            .role_of(&body.device)
            .is_some_and(|_| !membership.is_revoked(&body.device));
        if body.device.to_string() != device || body.device == *me || !current {
            continue;
        }
        found.insert(body.device, body);
    }
    found
}

impl TeamService {
    /// Publishes this device's addresses and dials the other members at theirs, from
    /// the membership document's entries `map` (read here when `None`).
    pub(crate) async fn refresh_addrs(&self, file: &TeamFile, map: Option<&Map<String, Value>>) {
        let read;
        let map = match map {
            Some(map) => map,
            None => match doc::read_map(&self.node, doc::doc_id(&file.team)).await {
                Some(found) => {
                    read = found;
                    &read
                }
                // No document yet: `doc::publish` creates it; its change brings us back.
                None => return,
            },
        };
        self.publish_addrs(file, map).await;
        self.dial_members(file, map).await;
    }

    /// Writes this device's record into the membership document when `map` (its
    /// entries) says otherwise (or nothing).
    async fn publish_addrs(&self, file: &TeamFile, map: &Map<String, Value>) {
        let listen = match self.node.status().await {
            Ok(status) => status.listen_addrs,
            Err(_) => return,
        };
        let addrs = publishable(&listen, self.me);
        let hub = self.hub.load(std::sync::atomic::Ordering::Relaxed);
        let id = doc::doc_id(&file.team);
        let key = format!("{KEY_PREFIX}{}", self.me);
        let same = map
            .get(&key)
            .and_then(Value::as_str)
            .and_then(|text| serde_json::from_str::<SignedAddresses>(text).ok())
            .and_then(|record| record.verify(&file.team.team_id()).ok())
            .is_some_and(|body| body.addrs == addrs && body.hub == hub);
        if same {
            return;
        }
        let body = AddressBody {
            team: file.team.team_id(),
            device: self.me,
            at_ms: now_ms(),
            addrs,
            hub,
        };
        let record = match SignedAddresses::sign(&self.keypair, &body) {
            Ok(record) => record,
            Err(error) => {
                tracing::warn!(%error, "this device's addresses not signed");
                return;
            }
        };
        let Ok(text) = serde_json::to_string(&record) else {
            return;
        };
        let op = peerdoc_node::EditOp::Set {
            path: format!("/{key}"),
            value: Value::String(text),
        };
        match self
            .node
            .edit(
                id,
                vec![op],
                Some("where this device can be reached".into()),
            )
            .await
        {
            Ok(_) => {
                tracing::info!(addrs = ?body.addrs, "published this device's addresses to the team")
            }
            Err(error) => tracing::warn!(%error, "this device's addresses not published"),
        }
    }

    /// The addresses the team's hubs published (other than this device), at most
    /// [`MAX_HUB_ADDRS`]: an invite carries them, so a newcomer finds a hub even where
    /// devices are kept apart and the inviter is not always there.
    pub(crate) async fn hub_addrs(&self) -> Vec<String> {
        let Some(file) = self.snapshot().await else {
            return Vec::new();
        };
        let Some(map) = doc::read_map(&self.node, doc::doc_id(&file.team)).await else {
            return Vec::new();
        };
        member_addrs(&file, &self.me, &map)
            .into_values()
            .filter(|record| record.hub)
            .flat_map(|record| record.addrs)
            .take(MAX_HUB_ADDRS)
            .collect()
    }

    /// Dials every other member at the addresses it published, and stops dialing the
    /// addresses no member lists any more.
    async fn dial_members(&self, file: &TeamFile, map: &Map<String, Value>) {
        // A device removed from the team dials nobody.
        let records = if file.team.membership().role_of(&self.me).is_none() {
            BTreeMap::new()
        } else {
            member_addrs(file, &self.me, map)
        };
        if let Ok(mut hubs) = self.hubs.write() {
            *hubs = records
                .values()
                .filter(|r| r.hub)
                .map(|r| r.device)
                .collect();
        }
        let wanted: BTreeSet<Multiaddr> = records
            .values()
            .flat_map(|r| r.addrs.iter().filter_map(|a| a.parse().ok()))
            .collect();
        let mut dialed = self.member_dials.lock().await;
        for addr in dialed.difference(&wanted) {
            // An address also remembered by hand stays dialed.
            if file.known_peers.iter().any(|k| *k == addr.to_string()) {
                continue;
            }
            if let Err(error) = self.node.remove_peer(addr.clone()).await {
                tracing::debug!(%error, %addr, "member address not dropped");
            }
        }
        for addr in wanted.difference(&dialed) {
            match self.node.add_peer(addr.clone()).await {
                Ok(_) => tracing::debug!(%addr, "dialing a member at the address it published"),
                Err(error) => tracing::debug!(%error, %addr, "member address not added"),
            }
        }
        *dialed = wanted;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only_when_there_is_nothing_else_and_never_unspecified() {
        let me = PeerId::random();
        let parse = |a: &str| a.parse::<Multiaddr>().expect("address");
        let lan = [
            parse("/ip4/127.0.0.1/tcp/7410"),
            parse("/ip4/198.18.0.5/tcp/7410"),
            parse("/ip4/0.0.0.0/tcp/7410"),
        ];
        assert_eq!(
            publishable(&lan, me),
            vec![format!("/ip4/198.18.0.5/tcp/7410/p2p/{me}")]
        );
        let single_host = [parse("/ip4/127.0.0.1/tcp/47110")];
        assert_eq!(
            publishable(&single_host, me),
            vec![format!("/ip4/127.0.0.1/tcp/47110/p2p/{me}")]
        );
        assert!(publishable(&[parse("/ip4/0.0.0.0/tcp/7410")], me).is_empty());
    }
}
