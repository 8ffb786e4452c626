//! Value framing: a format byte, a checksum, then the payload.
//!
//! ```text
//! +--------+----------------------+-----------------+
//! | 0x01   | crc32 (LE, 4 bytes)  | payload bytes   |
//! +--------+----------------------+-----------------+
//! ```
//!
//! The checksum is CRC-32 (IEEE, via `crc32fast`) over the *encoded key* followed by the
//! payload, so a value that ends up under the wrong key fails too.

use std::fmt;

/// The only framing format written today.
pub const FORMAT_V1: u8 = 0x01;
/// Bytes before the payload.
pub const HEADER_LEN: usize = 5;

/// Why a stored value was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CorruptionKind {
    /// Shorter than the frame header.
    Truncated {
        /// Stored length.
        len: usize,
    },
    /// The format byte is not one this build understands.
    UnknownFormat {
        /// The byte found.
        byte: u8,
    },
    /// The checksum does not match the key and payload.
    ChecksumMismatch {
        /// The checksum stored in the frame.
        stored: u32,
        /// The checksum of what was read.
        computed: u32,
    },
    /// The stored key bytes do not decode to a key.
    UndecodableKey,
    /// An encrypted store found a value that is not sealed (`byte` is its format byte):
    /// written without the key, so not trusted.
    NotSealed {
        /// The format byte found.
        byte: u8,
    },
    /// A sealed value failed authentication: damaged, or moved under another key.
    SealBroken,
}

impl fmt::Display for CorruptionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { len } => write!(f, "truncated frame ({len} bytes)"),
            Self::UnknownFormat { byte: 0x02 } => {
                f.write_str("an encrypted value (format byte 0x02) in an unencrypted store")
            }
            Self::UnknownFormat { byte } => write!(f, "unknown format byte {byte:#04x}"),
            Self::ChecksumMismatch { stored, computed } => write!(
                f,
                "checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
            Self::UndecodableKey => f.write_str("undecodable key"),
            Self::NotSealed { byte } => write!(
                f,
                "an unencrypted value (format byte {byte:#04x}) in an encrypted store"
            ),
            Self::SealBroken => f.write_str("sealed value failed authentication"),
        }
    }
}

fn checksum(encoded_key: &[u8], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(encoded_key);
    hasher.update(payload);
    hasher.finalize()
}

/// Frames `payload` for storage under `encoded_key`.
pub fn frame(encoded_key: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.push(FORMAT_V1);
    out.extend_from_slice(&checksum(encoded_key, payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Checks a stored frame and returns its payload.
pub fn unframe<'a>(encoded_key: &[u8], stored: &'a [u8]) -> Result<&'a [u8], CorruptionKind> {
    let Some((header, payload)) = stored.split_at_checked(HEADER_LEN) else {
        return Err(CorruptionKind::Truncated { len: stored.len() });
    };
    if header[0] != FORMAT_V1 {
        return Err(CorruptionKind::UnknownFormat { byte: header[0] });
    }
    let stored_sum = u32::from_le_bytes([header[1], header[2], header[3], header[4]]);
    let computed = checksum(encoded_key, payload);
    if stored_sum != computed {
        return Err(CorruptionKind::ChecksumMismatch {
            stored: stored_sum,
            computed,
        });
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let framed = frame(b"k", b"hello");
        assert_eq!(unframe(b"k", &framed), Ok(&b"hello"[..]));
        assert_eq!(unframe(b"k", &frame(b"k", b"")), Ok(&b""[..]));
    }

    #[test]
    fn every_single_bit_flip_is_caught() {
        let framed = frame(b"key", b"some payload bytes");
        for i in 0..framed.len() * 8 {
            let mut bad = framed.clone();
            bad[i / 8] ^= 1 << (i % 8);
            assert!(unframe(b"key", &bad).is_err(), "flip of bit {i} not caught");
        }
    }

    #[test]
    fn wrong_key_and_garbage_are_rejected() {
        let framed = frame(b"key", b"v");
        assert!(matches!(
            unframe(b"other", &framed),
            Err(CorruptionKind::ChecksumMismatch { .. })
        ));
        assert_eq!(
            unframe(b"k", b"\x01\x02"),
            Err(CorruptionKind::Truncated { len: 2 })
        );
        assert_eq!(
            unframe(b"k", b"\x09\0\0\0\0"),
            Err(CorruptionKind::UnknownFormat { byte: 9 })
        );
    }
}
