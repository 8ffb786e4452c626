//! [`NetConfig`]: everything the transport needs to know, serde-friendly.

use std::{collections::BTreeSet, time::Duration};

use libp2p::{Multiaddr, PeerId, multiaddr::Protocol};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::NetError;

/// Transport configuration.
///
/// The defaults suit a venue LAN: mDNS on, found within about a second, a departed device
/// forgotten well under a minute. Tests should start from [`NetConfig::loopback`], which
/// listens on 127.0.0.1 only and keeps mDNS off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetConfig {
    /// Addresses to listen on. QUIC addresses (`/udp/<port>/quic-v1`) are only allowed
    /// without a team key.
    pub listen_addrs: Vec<Multiaddr>,
    /// Discover peers with multicast DNS. Never enable this in a test that runs in the
    /// machine's own network namespace.
    pub enable_mdns: bool,
    /// How often mDNS asks "who is here?". A newcomer is found within one interval.
    #[serde(with = "millis")]
    pub mdns_query_interval: Duration,
    /// How long an mDNS answer stays valid; a device that left is expired after this.
    #[serde(with = "millis")]
    pub mdns_ttl: Duration,
    /// Peers to keep dialing regardless of discovery (networks that block multicast, a
    /// cloud peer). Redialed with exponential backoff while unreachable.
    pub peers: Vec<Multiaddr>,
    /// The team's pre-shared key. When set, every TCP connection runs libp2p's private
    /// network handshake first and QUIC is off.
    pub team_key: Option<[u8; 32]>,
    /// Previous team keys still in their grace period: inbound connections are also
    /// accepted under these (a member that missed a key rotation can still reach us and
    /// learn the new key), outbound ones always use `team_key`. At most 8, and only with
    /// a team key. A device holding one of them passes the team gate, so revoke it
    /// through the allowlist too.
    #[serde(default)]
    pub also_accept_keys: Vec<[u8; 32]>,
    /// When set, only these peers may complete a connection.
    pub allowlist: Option<BTreeSet<PeerId>>,
    /// Largest sync frame accepted or sent, in bytes. Checked before allocating.
    pub max_frame_size: usize,
    /// Frames that may wait for one peer's stream before `send_frame` returns
    /// [`NetError::PeerQueueFull`].
    pub peer_queue_len: usize,
    /// Capacity of the event channel to the caller. A full channel slows the peers whose
    /// frames wait (their streams stop being read); gossip is dropped instead of waiting.
    pub event_queue_len: usize,
    /// Capacity of the command channel from [`crate::NetHandle`]s.
    pub command_queue_len: usize,
    /// Largest gossip message, in bytes (gossipsub's `max_transmit_size`).
    pub max_gossip_size: usize,
    /// First redial delay for an explicit peer.
    #[serde(with = "millis")]
    pub reconnect_base: Duration,
    /// Longest redial delay for an explicit peer.
    #[serde(with = "millis")]
    pub reconnect_cap: Duration,
    /// How long a misbehaving peer is refused.
    #[serde(with = "millis")]
    pub ban_duration: Duration,
    /// Ping interval; a peer that misses a ping for twice this long is disconnected.
    #[serde(with = "millis")]
    pub ping_interval: Duration,
    /// Seed for reconnect jitter. `None` derives one from the clock.
    pub jitter_seed: Option<u64>,
    /// The most bytes per second the sync streams send, and the most they receive,
    /// over all peers together (`rate.rs`); `None` is unlimited.
    ///
    /// In a config file: bytes per second as a number, or text with a unit:
    /// `"2mbit"`, `"500kbit"`, `"250kB"`, `"1MB"`, `"256KiB"` (per second; `/s` may
    /// follow).
    #[serde(default, with = "rate_text")]
    pub max_rate: Option<u64>,
    /// Connections other devices opened to this one that are served at once; more are
    /// refused with a log line. Connections still in their handshake are capped at an
    /// eighth of this (at least 16) and time out after 10 s.
    pub max_incoming_connections: u32,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            listen_addrs: vec![tcp_addr([0, 0, 0, 0])],
            enable_mdns: true,
            mdns_query_interval: Duration::from_secs(1),
            mdns_ttl: Duration::from_secs(20),
            peers: Vec::new(),
            team_key: None,
            also_accept_keys: Vec::new(),
            allowlist: None,
            max_frame_size: 32 * 1024 * 1024,
            peer_queue_len: 64,
            event_queue_len: 1024,
            command_queue_len: 64,
            max_gossip_size: 64 * 1024,
            reconnect_base: Duration::from_millis(500),
            reconnect_cap: Duration::from_secs(30),
            ban_duration: Duration::from_secs(10 * 60),
            ping_interval: Duration::from_secs(5),
            jitter_seed: None,
            max_rate: None,
            max_incoming_connections: 512,
        }
    }
}

fn tcp_addr(ip: [u8; 4]) -> Multiaddr {
    Multiaddr::empty()
        .with(Protocol::Ip4(ip.into()))
        .with(Protocol::Tcp(0))
}

impl NetConfig {
    /// A configuration that stays on this machine: TCP on 127.0.0.1 with an OS-chosen
    /// port, mDNS off. The starting point for in-process tests.
    pub fn loopback() -> Self {
        Self {
            listen_addrs: vec![tcp_addr([127, 0, 0, 1])],
            enable_mdns: false,
            ..Self::default()
        }
    }

    /// The gossipsub topic of this team: `peerdoc/<16 hex digits of a hash of the key>`,
    /// or `peerdoc/open` without a key. Teams sharing a LAN never see each other's
    /// announcements, and the topic name does not reveal the key.
    pub fn gossip_topic(&self) -> String {
        match &self.team_key {
            Some(key) => {
                let mut hasher = Sha256::new();
                hasher.update(b"peerdoc gossip topic v1");
                hasher.update(key);
                let digest = hasher.finalize();
                format!("peerdoc/{}", hex::encode(&digest[..8]))
            }
            None => "peerdoc/open".to_owned(),
        }
    }

    /// Rejects values that would make the network unbounded or insecure.
    pub fn validate(&self) -> Result<(), NetError> {
        let positive = [
            ("max_frame_size", self.max_frame_size),
            ("peer_queue_len", self.peer_queue_len),
            ("event_queue_len", self.event_queue_len),
            ("command_queue_len", self.command_queue_len),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(NetError::InvalidConfig(format!("{name} must be positive")));
            }
        }
        if self.max_frame_size > u32::MAX as usize {
            return Err(NetError::InvalidConfig(
                "max_frame_size must fit in 32 bits".to_owned(),
            ));
        }
        if self.max_incoming_connections == 0 {
            return Err(NetError::InvalidConfig(
                "max_incoming_connections must be positive".to_owned(),
            ));
        }
        if self.max_rate.is_some_and(|rate| rate < 1024) {
            return Err(NetError::InvalidConfig(
                "max_rate must be at least 1 KiB per second".to_owned(),
            ));
        }
        if self.max_gossip_size < 1024 {
            return Err(NetError::InvalidConfig(
                "max_gossip_size must be at least 1 KiB".to_owned(),
            ));
        }
        if self.reconnect_base.is_zero() || self.reconnect_cap < self.reconnect_base {
            return Err(NetError::InvalidConfig(
                "reconnect_base must be positive and at most reconnect_cap".to_owned(),
            ));
        }
        if self.mdns_query_interval.is_zero() || self.mdns_ttl <= self.mdns_query_interval {
            return Err(NetError::InvalidConfig(
                "mdns_ttl must exceed a positive mdns_query_interval".to_owned(),
            ));
        }
        if self.ping_interval.is_zero() {
            return Err(NetError::InvalidConfig(
                "ping_interval must be positive".to_owned(),
            ));
        }
        if self.team_key.is_none() && !self.also_accept_keys.is_empty() {
            return Err(NetError::InvalidConfig(
                "also_accept_keys needs a team_key".to_owned(),
            ));
        }
        if self.also_accept_keys.len() > crate::pnet::MAX_ALSO_ACCEPT {
            return Err(NetError::InvalidConfig(format!(
                "at most {} also_accept_keys, got {}",
                crate::pnet::MAX_ALSO_ACCEPT,
                self.also_accept_keys.len()
            )));
        }
        if self.team_key.is_some() {
            for addr in self.listen_addrs.iter().chain(&self.peers) {
                if is_quic(addr) {
                    return Err(NetError::QuicWithTeamKey(addr.clone()));
                }
            }
        }
        Ok(())
    }
}

/// Whether the address uses QUIC.
pub(crate) fn is_quic(addr: &Multiaddr) -> bool {
    addr.iter()
        .any(|p| matches!(p, Protocol::QuicV1 | Protocol::Quic))
}

/// Durations as integer milliseconds, which reads well in TOML and JSON.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// Reads a rate in bytes per second from text with a unit (see [`parse_rate`]).
mod rate_text {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub(super) fn serialize<S: Serializer>(rate: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match rate {
            Some(rate) => s.serialize_u64(*rate),
            None => s.serialize_none(),
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Rate {
        Bytes(u64),
        Text(String),
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        match Option::<Rate>::deserialize(d)? {
            None => Ok(None),
            Some(Rate::Bytes(rate)) => Ok(Some(rate)),
            Some(Rate::Text(text)) => super::parse_rate(&text).map(Some).map_err(D::Error::custom),
        }
    }
}

/// Parses a rate: a number of bytes per second, or a number with a unit of bits
/// (`kbit`, `mbit`, `gbit`) or bytes (`B`, `kB`, `MB`, `GB`; `KiB`, `MiB` for powers of
/// 1024), optionally followed by `/s`. Decimal prefixes are powers of 1000.
pub(crate) fn parse_rate(text: &str) -> Result<u64, String> {
    let lower = text.trim().to_ascii_lowercase();
    let body = lower.strip_suffix("/s").unwrap_or(&lower).trim();
    let split = body
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(body.len());
    let (number, unit) = body.split_at(split);
    let bytes_per_unit: f64 = match unit.trim() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "bit" => 1.0 / 8.0,
        "kbit" => 1e3 / 8.0,
        "mbit" => 1e6 / 8.0,
        "gbit" => 1e9 / 8.0,
        other => {
            return Err(format!(
                "{text:?} is not a rate: unknown unit {other:?} (use e.g. \"2mbit\", \"500kbit\", \"250kB\" or a number of bytes per second)"
            ));
        }
    };
    let value: f64 = number.parse().map_err(|_| {
        format!("{text:?} is not a rate: it should start with a number (e.g. \"2mbit\")")
    })?;
    let rate = (value * bytes_per_unit).round();
    if !rate.is_finite() || rate < 1.0 || rate > u64::MAX as f64 {
        return Err(format!("{text:?} is not a usable rate"));
    }
    Ok(rate as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_with_their_units() {
        assert_eq!(parse_rate("2mbit"), Ok(250_000));
        assert_eq!(parse_rate("500 kbit/s"), Ok(62_500));
        assert_eq!(parse_rate("250kB"), Ok(250_000));
        assert_eq!(parse_rate("1MB/s"), Ok(1_000_000));
        assert_eq!(parse_rate("256KiB"), Ok(262_144));
        assert_eq!(parse_rate("1.5mbit"), Ok(187_500));
        assert_eq!(parse_rate("4096"), Ok(4096));
        for bad in ["fast", "2 parsecs", "", "0", "mbit"] {
            assert!(parse_rate(bad).is_err(), "{bad:?} was taken");
        }
        let from_text: NetConfig = serde_json::from_str(r#"{"max_rate": "2mbit"}"#).unwrap();
        assert_eq!(from_text.max_rate, Some(250_000));
        let from_number: NetConfig = serde_json::from_str(r#"{"max_rate": 4096}"#).unwrap();
        assert_eq!(from_number.max_rate, Some(4096));
        let error = serde_json::from_str::<NetConfig>(r#"{"max_rate": "2 parsecs"}"#).unwrap_err();
        assert!(error.to_string().contains("unknown unit"), "{error}");
    }

    #[test]
    fn defaults_are_valid_and_loopback_keeps_mdns_off() {
        NetConfig::default().validate().unwrap();
        let cfg = NetConfig::loopback();
        cfg.validate().unwrap();
        assert!(!cfg.enable_mdns);
    }

    #[test]
    fn topic_depends_on_key_without_revealing_it() {
        let open = NetConfig::default();
        assert_eq!(open.gossip_topic(), "peerdoc/open");
        let a = NetConfig {
            team_key: Some([1; 32]),
            ..NetConfig::default()
        };
        let b = NetConfig {
            team_key: Some([2; 32]),
            ..NetConfig::default()
        };
        assert_ne!(a.gossip_topic(), b.gossip_topic());
        assert!(!a.gossip_topic().contains(&hex::encode([1u8; 4])));
    }

    #[test]
    fn quic_with_team_key_is_rejected() {
        let cfg = NetConfig {
            team_key: Some([7; 32]),
            listen_addrs: vec!["/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap()],
            ..NetConfig::loopback()
        };
        assert!(matches!(cfg.validate(), Err(NetError::QuicWithTeamKey(_))));
    }

    #[test]
    fn also_accept_keys_are_bounded_and_need_a_team_key() {
        let keyless = NetConfig {
            also_accept_keys: vec![[1; 32]],
            ..NetConfig::loopback()
        };
        assert!(matches!(
            keyless.validate(),
            Err(NetError::InvalidConfig(_))
        ));
        let nine = NetConfig {
            team_key: Some([0; 32]),
            also_accept_keys: (1..=9).map(|b| [b; 32]).collect(),
            ..NetConfig::loopback()
        };
        assert!(matches!(nine.validate(), Err(NetError::InvalidConfig(_))));
        let eight = NetConfig {
            also_accept_keys: (1..=8).map(|b| [b; 32]).collect(),
            ..nine
        };
        eight.validate().unwrap();
    }

    #[test]
    fn also_accept_keys_default_to_none_when_absent() {
        let json = serde_json::to_value(NetConfig::loopback()).unwrap();
        let mut object = json.as_object().unwrap().clone();
        object.remove("also_accept_keys");
        let back: NetConfig = serde_json::from_value(object.into()).unwrap();
        assert!(back.also_accept_keys.is_empty());
    }

    #[test]
    fn config_round_trips_through_json() {
        let cfg = NetConfig {
            team_key: Some([9; 32]),
            also_accept_keys: vec![[8; 32]],
            allowlist: Some(BTreeSet::from([PeerId::random()])),
            ..NetConfig::loopback()
        };
        let json = serde_json::to_string(&cfg).unwrap();
        let back: NetConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(cfg, back);
    }
}
