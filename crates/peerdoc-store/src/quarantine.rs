//! Quarantine records: values that failed their checksum or framing, kept for inspection.
//!
//! A record lives in the `quarantine` tree under `encoded key ++ u64 BE sequence` and is
//! `0x01, kind tag (u8), kind fields (u64 LE each), raw stored value`.

use peerdoc_core::StorageKey;

use crate::frame::CorruptionKind;
use crate::key::decode_key;

const RECORD_V1: u8 = 0x01;

/// A stored value that failed verification and was moved out of the data tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantinedChunk {
    /// The key it was stored under, when its bytes decode.
    pub key: Option<StorageKey>,
    /// The key bytes as stored.
    pub raw_key: Vec<u8>,
    /// Why it was rejected; `None` when the record itself is unreadable.
    pub reason: Option<CorruptionKind>,
    /// The stored (framed) bytes, exactly as found.
    pub stored_value: Vec<u8>,
}

pub(crate) fn record_key(raw_key: &[u8], sequence: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw_key.len() + 8);
    out.extend_from_slice(raw_key);
    out.extend_from_slice(&sequence.to_be_bytes());
    out
}

pub(crate) fn sequence_of(record_key: &[u8]) -> u64 {
    record_key
        .len()
        .checked_sub(8)
        .and_then(|start| record_key[start..].try_into().ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

pub(crate) fn encode_record(reason: CorruptionKind, stored: &[u8]) -> Vec<u8> {
    let (tag, a, b): (u8, u64, u64) = match reason {
        CorruptionKind::Truncated { len } => (1, len as u64, 0),
        CorruptionKind::UnknownFormat { byte } => (2, u64::from(byte), 0),
        CorruptionKind::ChecksumMismatch { stored, computed } => {
            (3, u64::from(stored), u64::from(computed))
        }
        CorruptionKind::UndecodableKey => (4, 0, 0),
        CorruptionKind::NotSealed { byte } => (5, u64::from(byte), 0),
        CorruptionKind::SealBroken => (6, 0, 0),
    };
    let mut out = Vec::with_capacity(18 + stored.len());
    out.push(RECORD_V1);
    out.push(tag);
    out.extend_from_slice(&a.to_le_bytes());
    out.extend_from_slice(&b.to_le_bytes());
    out.extend_from_slice(stored);
    out
}

pub(crate) fn decode_record(record_key: &[u8], record: &[u8]) -> QuarantinedChunk {
    let raw_key = record_key[..record_key.len().saturating_sub(8)].to_vec();
    let key = decode_key(&raw_key).ok();
    let parsed = (|| {
        let (&version, rest) = record.split_first()?;
        if version != RECORD_V1 {
            return None;
        }
        let (&tag, rest) = rest.split_first()?;
        let (a, rest) = rest.split_at_checked(8)?;
        let (b, stored) = rest.split_at_checked(8)?;
        let a = u64::from_le_bytes(a.try_into().ok()?);
        let b = u64::from_le_bytes(b.try_into().ok()?);
        let reason = match tag {
            1 => CorruptionKind::Truncated {
                len: usize::try_from(a).ok()?,
            },
            2 => CorruptionKind::UnknownFormat {
                byte: u8::try_from(a).ok()?,
            },
            3 => CorruptionKind::ChecksumMismatch {
                stored: u32::try_from(a).ok()?,
                computed: u32::try_from(b).ok()?,
            },
            4 => CorruptionKind::UndecodableKey,
            5 => CorruptionKind::NotSealed {
                byte: u8::try_from(a).ok()?,
            },
            6 => CorruptionKind::SealBroken,
            _ => return None,
        };
        Some((reason, stored.to_vec()))
    })();
    match parsed {
        Some((reason, stored_value)) => QuarantinedChunk {
            key,
            raw_key,
            reason: Some(reason),
            stored_value,
        },
        None => QuarantinedChunk {
            key,
            raw_key,
            reason: None,
            stored_value: record.to_vec(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::encode_key;

    #[test]
    fn records_round_trip() {
        let raw = encode_key(&StorageKey::new(["d", "incremental", "h"]));
        for reason in [
            CorruptionKind::Truncated { len: 3 },
            CorruptionKind::UnknownFormat { byte: 7 },
            CorruptionKind::ChecksumMismatch {
                stored: 1,
                computed: u32::MAX,
            },
            CorruptionKind::UndecodableKey,
            CorruptionKind::NotSealed { byte: 1 },
            CorruptionKind::SealBroken,
        ] {
            let rk = record_key(&raw, 42);
            assert_eq!(sequence_of(&rk), 42);
            let chunk = decode_record(&rk, &encode_record(reason, b"bytes"));
            assert_eq!(chunk.reason, Some(reason));
            assert_eq!(chunk.raw_key, raw);
            assert_eq!(chunk.key, Some(StorageKey::new(["d", "incremental", "h"])));
            assert_eq!(chunk.stored_value, b"bytes");
        }
    }

    #[test]
    fn unreadable_records_are_reported_not_panicked_on() {
        let chunk = decode_record(b"abc", b"\x01\x09");
        assert_eq!(chunk.reason, None);
        let chunk = decode_record(b"", b"");
        assert_eq!(chunk.reason, None);
    }
}
