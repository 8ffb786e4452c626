//! Identifier types shared by every peerdoc crate.
//!
//! [`DocumentId`] is automerge-repo's document id: the bs58check encoding (base58 with a
//! four-byte double-SHA-256 checksum, no version byte) of a 16-byte UUID. Its URL form is
//! `automerge:<id>`.

use std::fmt;
use std::str::FromStr;

use automerge::ChangeHash;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// The prefix of an automerge-repo document URL.
pub const URL_PREFIX: &str = "automerge:";

/// A document's identity: 16 random bytes, printed as bs58check like automerge-repo.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DocumentId([u8; 16]);

/// Why a string is not a valid [`DocumentId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentIdError {
    /// The text contains characters outside the base58 alphabet.
    #[error("document id {0:?} is not base58")]
    NotBase58(String),
    /// The four-byte checksum at the end does not match the payload.
    #[error("document id {0:?} has a bad checksum")]
    BadChecksum(String),
    /// The payload decoded, but is not 16 bytes long.
    #[error("document id {id:?} decodes to {len} bytes, expected 16")]
    WrongLength {
        /// The text that was parsed.
        id: String,
        /// How many payload bytes it held.
        len: usize,
    },
}

impl DocumentId {
    /// Wraps 16 raw bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The 16 raw bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// A fresh random (version 4, RFC 4122 variant) UUID from the caller's rng.
    pub fn random<R: RngCore + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0u8; 16];
        rng.fill_bytes(&mut bytes);
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        Self(bytes)
    }

    /// The `automerge:<id>` URL.
    pub fn to_url(&self) -> String {
        format!("{URL_PREFIX}{self}")
    }

    /// Parses either a bare id or an `automerge:` URL (a `#heads` suffix is ignored).
    pub fn parse(text: &str) -> Result<Self, DocumentIdError> {
        let bare = text.strip_prefix(URL_PREFIX).unwrap_or(text);
        let bare = bare.split('#').next().unwrap_or(bare);
        let decoded = bs58::decode(bare).with_check(None).into_vec();
        let bytes = match decoded {
            Ok(bytes) => bytes,
            Err(bs58::decode::Error::InvalidChecksum { .. }) => {
                return Err(DocumentIdError::BadChecksum(text.to_owned()));
            }
            Err(bs58::decode::Error::NoChecksum) => {
                return Err(DocumentIdError::WrongLength {
                    id: text.to_owned(),
                    len: 0,
                });
            }
            Err(_) => return Err(DocumentIdError::NotBase58(text.to_owned())),
        };
        let array: [u8; 16] =
            bytes
                .as_slice()
                .try_into()
                .map_err(|_| DocumentIdError::WrongLength {
                    id: text.to_owned(),
                    len: bytes.len(),
                })?;
        Ok(Self(array))
    }
}

impl fmt::Display for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bs58::encode(self.0).with_check().into_string())
    }
}

impl fmt::Debug for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DocumentId({self})")
    }
}

impl FromStr for DocumentId {
    type Err = DocumentIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl serde::Serialize for DocumentId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for DocumentId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a string as this id.
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }
    };
}

string_id!(
    /// automerge-repo's `senderId`/`targetId`: who is speaking on a connection.
    PeerId
);
string_id!(
    /// A stable id of a peer's storage (automerge-repo's `storageId`); sync state is
    /// persisted per storage id, so it survives restarts on both sides.
    StorageId
);

impl PeerId {
    /// The 8 bytes this peer's automerge actor ids start with (see
    /// `RepoConfig::actor_prefix`): SHA-256 of a domain tag and the peer id's text.
    /// History shows who made a change by matching an actor against these.
    pub fn actor_prefix(&self) -> [u8; 8] {
        let digest = Sha256::new()
            .chain_update(b"peerdoc actor prefix v1\0")
            .chain_update(self.0.as_bytes())
            .finalize();
        let mut prefix = [0u8; 8];
        prefix.copy_from_slice(&digest[..8]);
        prefix
    }
}

impl StorageId {
    /// A fresh random storage id (a UUID in its usual hyphenated text form).
    pub fn random<R: RngCore + ?Sized>(rng: &mut R) -> Self {
        let b = DocumentId::random(rng).0;
        Self(format!(
            "{}-{}-{}-{}-{}",
            hex::encode(&b[0..4]),
            hex::encode(&b[4..6]),
            hex::encode(&b[6..8]),
            hex::encode(&b[8..10]),
            hex::encode(&b[10..16])
        ))
    }
}

/// Identifies one connection as seen by the driver. Never reused within a process, so a
/// message that arrives late from a closed connection can be recognised and dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnectionId(pub u64);

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn-{}", self.0)
    }
}

/// A compact digest of a document's heads: equal heads give equal digests.
///
/// Used by whole-repo reconciliation, where each document is one (id, digest) item.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HeadsDigest(pub [u8; 16]);

impl HeadsDigest {
    /// The digest that marks a deleted document (a tombstone). No real heads produce it
    /// in practice: it would need a SHA-256 prefix of all ones.
    pub const TOMBSTONE: HeadsDigest = HeadsDigest([0xff; 16]);

    /// The digest of an empty document (no changes).
    pub fn empty() -> Self {
        Self::of(&[])
    }

    /// The digest of a set of heads, independent of their order.
    pub fn of(heads: &[ChangeHash]) -> Self {
        let mut sorted: Vec<&ChangeHash> = heads.iter().collect();
        sorted.sort();
        let mut hasher = Sha256::new();
        for head in sorted {
            hasher.update(head.0);
        }
        let full = hasher.finalize();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        Self(out)
    }

    /// Whether this digest marks a deleted document.
    pub fn is_tombstone(&self) -> bool {
        *self == Self::TOMBSTONE
    }
}

impl fmt::Debug for HeadsDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HeadsDigest({})", hex::encode(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_checks() {
        let id = DocumentId::from_bytes([7u8; 16]);
        let text = id.to_string();
        assert_eq!(DocumentId::parse(&text).unwrap(), id);
        assert_eq!(DocumentId::parse(&id.to_url()).unwrap(), id);
        assert_eq!(
            DocumentId::parse(&format!("{}#abc", id.to_url())).unwrap(),
            id
        );
    }

    #[test]
    fn checksum_is_double_sha256_prefix() {
        let bytes = [0x11u8; 16];
        let id = DocumentId::from_bytes(bytes).to_string();
        let raw = bs58::decode(&id).into_vec().unwrap();
        assert_eq!(raw.len(), 20);
        let first = Sha256::digest(bytes);
        let second = Sha256::digest(first);
        assert_eq!(&raw[16..], &second[..4]);
    }

    #[test]
    fn rejects_bad_ids() {
        let good = DocumentId::from_bytes([9u8; 16]).to_string();
        // Flip the last character to another base58 character: the checksum breaks.
        let mut bad = good.clone();
        let last = bad.pop().unwrap();
        bad.push(if last == '2' { '3' } else { '2' });
        assert!(matches!(
            DocumentId::parse(&bad),
            Err(DocumentIdError::BadChecksum(_))
        ));
        assert!(matches!(
            DocumentId::parse("0OIl"),
            Err(DocumentIdError::NotBase58(_))
        ));
        let short = bs58::encode([1u8; 8]).with_check().into_string();
        assert!(matches!(
            DocumentId::parse(&short),
            Err(DocumentIdError::WrongLength { len: 8, .. })
        ));
        assert!(DocumentId::parse("").is_err());
    }

    #[test]
    fn random_ids_are_v4_uuids() {
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let id = DocumentId::random(&mut rng);
        assert_eq!(id.as_bytes()[6] >> 4, 4);
        assert_eq!(id.as_bytes()[8] >> 6, 0b10);
    }

    #[test]
    fn heads_digest_ignores_order() {
        let a = ChangeHash([1; 32]);
        let b = ChangeHash([2; 32]);
        assert_eq!(HeadsDigest::of(&[a, b]), HeadsDigest::of(&[b, a]));
        assert_ne!(HeadsDigest::of(&[a]), HeadsDigest::of(&[b]));
        assert!(!HeadsDigest::empty().is_tombstone());
    }
}
