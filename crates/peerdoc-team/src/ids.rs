//! Identifiers of teams and membership ops.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error as _};
use sha2::{Digest, Sha256};

use crate::TeamError;

/// Identifies a team: derived from its signed genesis, so a second genesis cannot claim it.
///
/// Written as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TeamId([u8; 16]);

impl TeamId {
    /// Wraps raw bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// `SHA-256("peerdoc team id v1" || genesis body)[..16]`.
    pub(crate) fn derive(genesis_body: &[u8]) -> Self {
        let digest = Sha256::new()
            .chain_update(b"peerdoc team id v1")
            .chain_update(genesis_body)
            .finalize();
        Self(first_16(&digest))
    }
}

impl fmt::Display for TeamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for TeamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TeamId({self})")
    }
}

impl FromStr for TeamId {
    type Err = TeamError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 16];
        hex::decode_to_slice(s.trim(), &mut bytes)
            .map_err(|_| TeamError::BadTeamId(s.chars().take(40).collect()))?;
        Ok(Self(bytes))
    }
}

impl Serialize for TeamId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TeamId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(D::Error::custom)
    }
}

/// Identifies a signed membership op: a hash of its body and signature.
///
/// Written as 32 lowercase hex digits. Ops with equal bodies and signatures are the same op.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId([u8; 16]);

impl OpId {
    /// `SHA-256("peerdoc team op id v1\0" || len(body) as u32 BE || body || signature)[..16]`.
    ///
    /// The length prefix keeps the split between body and signature unambiguous.
    pub(crate) fn derive(body: &[u8], signature: &[u8]) -> Self {
        let body_len = u32::try_from(body.len()).unwrap_or(u32::MAX);
        let digest = Sha256::new()
            .chain_update(b"peerdoc team op id v1\0")
            .chain_update(body_len.to_be_bytes())
            .chain_update(body)
            .chain_update(signature)
            .finalize();
        Self(first_16(&digest))
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OpId({self})")
    }
}

fn first_16(digest: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&digest[..16]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn team_id_round_trips_as_hex() {
        let id = TeamId::from_bytes([0xab; 16]);
        let text = id.to_string();
        assert_eq!(text, "ab".repeat(16));
        assert_eq!(text.parse::<TeamId>(), Ok(id));
        let json = serde_json::to_string(&id).ok();
        assert_eq!(json, Some(format!("\"{text}\"")));
        assert_eq!(
            serde_json::from_str::<TeamId>(&format!("\"{text}\"")).ok(),
            Some(id)
        );
        assert!("xyz".parse::<TeamId>().is_err());
        assert!("abab".parse::<TeamId>().is_err());
    }

    #[test]
    fn op_id_separates_body_and_signature() {
        assert_ne!(OpId::derive(b"ab", b"c"), OpId::derive(b"a", b"bc"));
    }
}
