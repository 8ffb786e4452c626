//! Invite codes: an 80-bit secret and the inviter's enrolment addresses, short enough to be
//! read aloud, typed, or scanned as a QR code.
//!
//! Binary layout: version (1) · secret (10) · address count (1) · per address a type byte
//! (4 or 6), the IP bytes and the port (u16 BE) · checksum (the first 2 bytes of SHA-256 of
//! everything before). As text: `PD-` then Crockford base32 in groups of 4, e.g.
//! `PD-0000-...` (45 characters with one IPv4 address).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::LazyLock;

use data_encoding::{DecodeKind, Encoding, Specification};
use rand::CryptoRng;
use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error as _};
use sha2::{Digest, Sha256};

use crate::InviteCodeError;
use crate::TeamError;
use crate::encoding::hex_array;

mod qr;

/// Most enrolment addresses an invite code carries.
pub const MAX_INVITE_ADDRS: usize = 6;

const VERSION: u8 = 1;
const TEXT_PREFIX: &str = "PD";
const GROUP: usize = 4;
/// Longest input `parse` looks at; a code with six IPv6 addresses is about 260 characters.
const MAX_TEXT: usize = 1024;
/// Crockford's base32 alphabet: no I, L, O or U.
const CROCKFORD_SYMBOLS: &str = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

static CROCKFORD: LazyLock<Encoding> = LazyLock::new(|| {
    let mut spec = Specification::new();
    spec.symbols.push_str(CROCKFORD_SYMBOLS);
    // A constant, valid specification: `crockford_spec_is_valid` exercises it.
    spec.encoding()
        .expect("Crockford base32 specification is valid")
});

/// The invite's 80-bit secret. It keys the enrolment handshake, so it is never printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct InviteSecret(#[serde(with = "hex_array")] [u8; 10]);

impl InviteSecret {
    /// Draws a fresh secret.
    pub fn random<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0u8; 10];
        rng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// Wraps raw bytes.
    pub const fn from_bytes(bytes: [u8; 10]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 10] {
        &self.0
    }

    /// The public tag naming this invite.
    pub fn tag(&self) -> InviteTag {
        let digest = Sha256::new()
            .chain_update(b"peerdoc invite tag v1")
            .chain_update(self.0)
            .finalize();
        let mut tag = [0u8; 8];
        tag.copy_from_slice(&digest[..8]);
        InviteTag(tag)
    }
}

impl fmt::Debug for InviteSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InviteSecret(<redacted>)")
    }
}

/// Names an invite without revealing its secret: 8 bytes of a hash of the secret, written as
/// 16 hex digits. It is sent in clear at the start of a join request.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InviteTag([u8; 8]);

impl InviteTag {
    /// Wraps raw bytes.
    pub const fn from_bytes(bytes: [u8; 8]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 8] {
        &self.0
    }
}

impl fmt::Display for InviteTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for InviteTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InviteTag({self})")
    }
}

impl FromStr for InviteTag {
    type Err = TeamError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 8];
        hex::decode_to_slice(s.trim(), &mut bytes)
            .map_err(|_| TeamError::BadInviteTag(s.chars().take(40).collect()))?;
        Ok(Self(bytes))
    }
}

impl Serialize for InviteTag {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for InviteTag {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(D::Error::custom)
    }
}

/// What a joiner needs: the invite secret and where to reach the inviter.
#[derive(Clone, PartialEq, Eq)]
pub struct InviteCode {
    secret: InviteSecret,
    addrs: Vec<SocketAddr>,
}

impl InviteCode {
    /// A code for `secret` reachable at `addrs` (at most [`MAX_INVITE_ADDRS`]).
    pub fn new(secret: InviteSecret, addrs: Vec<SocketAddr>) -> Result<Self, InviteCodeError> {
        if addrs.len() > MAX_INVITE_ADDRS {
            return Err(InviteCodeError::TooManyAddresses);
        }
        Ok(Self { secret, addrs })
    }

    /// The secret.
    pub fn secret(&self) -> &InviteSecret {
        &self.secret
    }

    /// The inviter's enrolment addresses, to dial in order.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The invite's public tag.
    pub fn tag(&self) -> InviteTag {
        self.secret.tag()
    }

    /// The binary form, checksum included.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(14 + 19 * self.addrs.len());
        bytes.push(VERSION);
        bytes.extend_from_slice(self.secret.as_bytes());
        // `new` and `from_bytes` bound the count to MAX_INVITE_ADDRS.
        bytes.push(self.addrs.len().min(MAX_INVITE_ADDRS) as u8);
        for addr in self.addrs.iter().take(MAX_INVITE_ADDRS) {
            match addr.ip() {
                IpAddr::V4(ip) => {
                    bytes.push(4);
                    bytes.extend_from_slice(&ip.octets());
                }
                IpAddr::V6(ip) => {
                    bytes.push(6);
                    bytes.extend_from_slice(&ip.octets());
                }
            }
            bytes.extend_from_slice(&addr.port().to_be_bytes());
        }
        let sum = checksum(&bytes);
        bytes.extend_from_slice(&sum);
        bytes
    }

    /// Decodes the binary form.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, InviteCodeError> {
        const HEADER: usize = 1 + 10 + 1;
        if bytes.len() < HEADER + 2 {
            return Err(InviteCodeError::Truncated);
        }
        let (payload, sum) = bytes.split_at(bytes.len() - 2);
        if checksum(payload) != sum {
            return Err(InviteCodeError::Checksum);
        }
        if payload[0] != VERSION {
            return Err(InviteCodeError::Version);
        }
        let mut secret = [0u8; 10];
        secret.copy_from_slice(&payload[1..11]);
        let count = usize::from(payload[11]);
        if count > MAX_INVITE_ADDRS {
            return Err(InviteCodeError::TooManyAddresses);
        }
        let mut rest = &payload[HEADER..];
        let mut addrs = Vec::with_capacity(count);
        for _ in 0..count {
            let (ip, len) = match rest.first() {
                Some(4) => match rest.get(1..5).and_then(|b| <[u8; 4]>::try_from(b).ok()) {
                    Some(octets) => (IpAddr::V4(Ipv4Addr::from(octets)), 5),
                    None => return Err(InviteCodeError::Malformed),
                },
                Some(6) => match rest.get(1..17).and_then(|b| <[u8; 16]>::try_from(b).ok()) {
                    Some(octets) => (IpAddr::V6(Ipv6Addr::from(octets)), 17),
                    None => return Err(InviteCodeError::Malformed),
                },
                _ => return Err(InviteCodeError::Malformed),
            };
            let port = rest
                .get(len..len + 2)
                .and_then(|b| <[u8; 2]>::try_from(b).ok())
                .map(u16::from_be_bytes)
                .ok_or(InviteCodeError::Malformed)?;
            addrs.push(SocketAddr::new(ip, port));
            rest = &rest[len + 2..];
        }
        if !rest.is_empty() {
            return Err(InviteCodeError::Malformed);
        }
        Ok(Self {
            secret: InviteSecret(secret),
            addrs,
        })
    }

    /// Parses a typed or scanned code: case, spaces and dashes do not matter, the `PD` prefix
    /// is optional, and Crockford's look-alikes are accepted (O for 0, I and L for 1).
    pub fn parse(text: &str) -> Result<Self, InviteCodeError> {
        let mut symbols = String::with_capacity(text.len().min(MAX_TEXT));
        for c in text.chars().take(MAX_TEXT) {
            let symbol = match c.to_ascii_uppercase() {
                ' ' | '-' | '\t' | '\r' | '\n' => continue,
                'O' => '0',
                'I' | 'L' => '1',
                upper if upper.is_ascii() && CROCKFORD_SYMBOLS.contains(upper) => upper,
                _ => return Err(InviteCodeError::BadCharacter(c)),
            };
            symbols.push(symbol);
        }
        // A version-1 code starts with `0` (its first 5 bits are zero), so a leading `PD`
        // is always the prefix.
        let symbols = symbols.strip_prefix(TEXT_PREFIX).unwrap_or(&symbols);
        let bytes = CROCKFORD
            .decode(symbols.as_bytes())
            .map_err(|err| match err.kind {
                DecodeKind::Length => InviteCodeError::Truncated,
                // Non-zero padding bits in the last symbol: a typo there.
                _ => InviteCodeError::Checksum,
            })?;
        Self::from_bytes(&bytes)
    }
}

impl fmt::Display for InviteCode {
    /// `PD-` and the Crockford base32 of the binary form in groups of 4.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let symbols = CROCKFORD.encode(&self.to_bytes());
        f.write_str(TEXT_PREFIX)?;
        for group in symbols.as_bytes().chunks(GROUP) {
            f.write_str("-")?;
            f.write_str(std::str::from_utf8(group).map_err(|_| fmt::Error)?)?;
        }
        Ok(())
    }
}

impl fmt::Debug for InviteCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InviteCode")
            .field("tag", &self.tag())
            .field("secret", &self.secret)
            .field("addrs", &self.addrs)
            .finish()
    }
}

impl FromStr for InviteCode {
    type Err = InviteCodeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

fn checksum(payload: &[u8]) -> [u8; 2] {
    let digest = Sha256::digest(payload);
    [digest[0], digest[1]]
}

#[cfg(test)]
mod tests;
