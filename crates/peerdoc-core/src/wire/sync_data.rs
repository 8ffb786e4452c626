//! The automerge sync message a peer puts in the `data` of `sync` and `request`:
//! automerge's decoder, then the checks automerge itself leaves out.
//!
//! automerge 0.12 decodes a "have" whose bloom filter claims entries but holds no bits
//! (zero bits per entry), and later divides by zero when it consults that filter to
//! answer; and it sizes, then fills, a vector by the filter's claimed probe count, up to
//! 2^32 − 1. Either lets one small message from a peer crash or stall the engine (the
//! first was found by the `automerge_sync` fuzz target). So every sync message from a
//! peer goes through [`decode_sync_data`], never `sync::Message::decode` alone.

use automerge::sync::{self, BloomFilter};

/// The most probes a peer's bloom filter may ask for per hash. automerge writes 7; a
/// filter asking for more costs us that many steps for each change we might send.
pub const MAX_BLOOM_PROBES: u32 = 32;

/// Why the `data` of a `sync` or `request` is not a sync message we can act on.
#[derive(Debug, thiserror::Error)]
pub enum SyncDataError {
    /// automerge's decoder refused it.
    #[error("undecodable sync message: {0}")]
    Undecodable(#[from] sync::ReadMessageError),
    /// A bloom filter claims entries but has no bits to look them up in.
    #[error("sync message bloom filter claims {entries} entries but has no bits")]
    BitlessBloomFilter {
        /// The claimed number of entries.
        entries: u64,
    },
    /// A bloom filter asks for more probes per hash than [`MAX_BLOOM_PROBES`].
    #[error(
        "sync message bloom filter asks for {probes} probes per hash, at most {MAX_BLOOM_PROBES}"
    )]
    TooManyBloomProbes {
        /// The probes asked for.
        probes: u64,
    },
}

/// Decodes a peer's automerge sync message and refuses the bloom filters automerge could
/// not consult safely.
pub fn decode_sync_data(data: &[u8]) -> Result<sync::Message, SyncDataError> {
    let message = sync::Message::decode(data)?;
    for have in &message.have {
        check_bloom(&have.bloom)?;
    }
    Ok(message)
}

/// Reads the filter's parameters back from its encoding, the only view automerge gives
/// of them: nothing for an empty filter, else LEB128 entries, bits per entry and probes,
/// then the bits.
fn check_bloom(bloom: &BloomFilter) -> Result<(), SyncDataError> {
    let bytes = bloom.to_bytes();
    let mut rest = bytes.as_slice();
    let (Some(entries), Some(_bits_per_entry), Some(probes)) = (
        read_leb128(&mut rest),
        read_leb128(&mut rest),
        read_leb128(&mut rest),
    ) else {
        // An empty filter: automerge never consults it.
        return Ok(());
    };
    if entries > 0 && rest.is_empty() {
        return Err(SyncDataError::BitlessBloomFilter { entries });
    }
    if probes > u64::from(MAX_BLOOM_PROBES) {
        return Err(SyncDataError::TooManyBloomProbes { probes });
    }
    Ok(())
}

/// One unsigned LEB128 number from the front of `bytes`; `None` at the end of the input
/// or past 64 bits.
fn read_leb128(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use automerge::sync::SyncDoc;
    use automerge::transaction::Transactable;
    use automerge::{AutoCommit, ROOT};

    use super::*;

    /// A version-1 sync message: one head we lack, one "have" with no last-sync heads and
    /// the given encoded bloom filter, no changes.
    fn with_bloom(bloom: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0x42, 0x01];
        bytes.extend([0xab; 32]);
        bytes.extend([0x00, 0x01, 0x00, bloom.len() as u8]);
        bytes.extend_from_slice(bloom);
        bytes.push(0x00);
        bytes
    }

    #[test]
    fn a_bloom_filter_with_entries_and_no_bits_is_refused() {
        // 1 entry, 0 bits per entry, 7 probes: automerge decodes it, then divides by zero.
        let data = with_bloom(&[0x01, 0x00, 0x07]);
        assert!(sync::Message::decode(&data).is_ok());
        assert!(matches!(
            decode_sync_data(&data),
            Err(SyncDataError::BitlessBloomFilter { entries: 1 })
        ));
    }

    #[test]
    fn a_bloom_filter_with_too_many_probes_is_refused() {
        // 1 entry, 10 bits per entry (2 bytes of bits), 2^32 - 1 probes.
        let data = with_bloom(&[0x01, 0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x00, 0x00]);
        assert!(sync::Message::decode(&data).is_ok());
        assert!(matches!(
            decode_sync_data(&data),
            Err(SyncDataError::TooManyBloomProbes {
                probes: 0xffff_ffff
            })
        ));
    }

    #[test]
    fn what_automerge_writes_is_accepted_and_answered() {
        let mut doc = AutoCommit::new();
        doc.put(ROOT, "song", "first").expect("put");
        doc.commit();
        let mut theirs = doc.fork();
        theirs.put(ROOT, "song", "second").expect("put");
        theirs.commit();
        let (mut doc, mut theirs) = (doc.document().clone(), theirs.document().clone());
        let (mut ours, mut their_state) = (sync::State::new(), sync::State::new());
        for _ in 0..4 {
            if let Some(message) = theirs.generate_sync_message(&mut their_state) {
                let message = decode_sync_data(&message.encode()).expect("accepted");
                doc.receive_sync_message(&mut ours, message)
                    .expect("receive");
            }
            if let Some(message) = doc.generate_sync_message(&mut ours) {
                let message = decode_sync_data(&message.encode()).expect("accepted");
                theirs
                    .receive_sync_message(&mut their_state, message)
                    .expect("receive");
            }
        }
        assert_eq!(doc.get_heads(), theirs.get_heads());
        // The filter parameters of an empty filter are not written: still accepted.
        assert!(decode_sync_data(&with_bloom(&[])).is_ok());
    }
}
