//! Sync-stream framing: an unsigned LEB128 varint length (at most 5 bytes, minimal
//! encoding, at most `u32::MAX`) followed by that many payload bytes.
//!
//! The length is checked against the cap before any buffer is allocated, so a hostile
//! peer cannot make us reserve memory by announcing a huge frame.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Longest varint we accept: five 7-bit groups cover a `u32`.
pub(crate) const MAX_PREFIX_LEN: usize = 5;

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    /// The stream failed or ended in the middle of a frame.
    #[error("stream error: {0}")]
    Io(#[from] io::Error),
    /// The length prefix is not a minimal varint fitting 32 bits.
    #[error("malformed length prefix")]
    MalformedPrefix,
    /// The announced length exceeds the cap.
    #[error("frame of {len} bytes exceeds the {max} byte cap")]
    TooLarge {
        /// Announced length.
        len: u64,
        /// Cap.
        max: usize,
    },
}

/// Encodes `len` as a varint into `buf`, returning the number of bytes used.
pub(crate) fn encode_len(mut len: u32, buf: &mut [u8; MAX_PREFIX_LEN]) -> usize {
    let mut i = 0;
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            buf[i] = byte;
            return i + 1;
        }
        buf[i] = byte | 0x80;
        i += 1;
    }
}

/// Decodes one varint from an iterator of bytes, as sent by a peer.
///
/// `Ok(None)` means the input ended before the varint did.
pub(crate) fn decode_len(bytes: &[u8]) -> Result<Option<(u32, usize)>, FrameError> {
    let mut value: u64 = 0;
    for (i, &byte) in bytes.iter().enumerate() {
        if i == MAX_PREFIX_LEN {
            return Err(FrameError::MalformedPrefix);
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            // A trailing zero group means a longer-than-needed encoding: two encodings of
            // one length would make frames ambiguous to fuzzers and to us.
            if i > 0 && byte == 0 {
                return Err(FrameError::MalformedPrefix);
            }
            let value = u32::try_from(value).map_err(|_| FrameError::MalformedPrefix)?;
            return Ok(Some((value, i + 1)));
        }
    }
    if bytes.len() >= MAX_PREFIX_LEN {
        return Err(FrameError::MalformedPrefix);
    }
    Ok(None)
}

/// Reads one frame. `Ok(None)` is a clean end of stream between frames.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    max: usize,
) -> Result<Option<Vec<u8>>, FrameError> {
    let mut prefix = [0u8; MAX_PREFIX_LEN];
    let mut filled = 0;
    let len = loop {
        let mut byte = [0u8; 1];
        let n = reader.read(&mut byte).await?;
        if n == 0 {
            if filled == 0 {
                return Ok(None);
            }
            return Err(FrameError::Io(io::ErrorKind::UnexpectedEof.into()));
        }
        if filled == MAX_PREFIX_LEN {
            return Err(FrameError::MalformedPrefix);
        }
        prefix[filled] = byte[0];
        filled += 1;
        if let Some((len, _)) = decode_len(&prefix[..filled])? {
            break len;
        }
    };
    let len_usize = len as usize;
    if len_usize > max {
        return Err(FrameError::TooLarge {
            len: u64::from(len),
            max,
        });
    }
    let mut payload = vec![0u8; len_usize];
    reader.read_exact(&mut payload).await?;
    Ok(Some(payload))
}

/// Writes one frame (without flushing, so that queued frames can share a flush).
pub(crate) async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    payload: &[u8],
) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame exceeds 4 GiB"))?;
    let mut prefix = [0u8; MAX_PREFIX_LEN];
    let n = encode_len(len, &mut prefix);
    writer.write_all(&prefix[..n]).await?;
    writer.write_all(payload).await
}

#[cfg(test)]
mod tests {
    use futures::{executor::block_on, io::Cursor};

    use super::*;

    fn roundtrip(frames: &[Vec<u8>], max: usize) -> Vec<Vec<u8>> {
        block_on(async {
            let mut wire = Vec::new();
            for f in frames {
                write_frame(&mut wire, f).await.unwrap();
            }
            let mut reader = Cursor::new(wire);
            let mut out = Vec::new();
            while let Some(f) = read_frame(&mut reader, max).await.unwrap() {
                out.push(f);
            }
            out
        })
    }

    #[test]
    fn frames_round_trip_in_order() {
        let frames: Vec<Vec<u8>> = (0..300u32)
            .map(|i| vec![(i % 251) as u8; (i * 37 % 1000) as usize])
            .collect();
        assert_eq!(roundtrip(&frames, 1 << 20), frames);
    }

    #[test]
    fn varint_boundaries_round_trip() {
        for len in [
            0u32,
            1,
            127,
            128,
            16_383,
            16_384,
            2_097_151,
            2_097_152,
            u32::MAX,
        ] {
            let mut buf = [0u8; MAX_PREFIX_LEN];
            let n = encode_len(len, &mut buf);
            assert_eq!(decode_len(&buf[..n]).unwrap(), Some((len, n)), "{len}");
            assert_eq!(decode_len(&buf[..n - 1]).unwrap(), None);
        }
    }

    #[test]
    fn overlong_and_non_minimal_prefixes_are_malformed() {
        for bad in [
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0x01][..],
            &[0xff, 0xff, 0xff, 0xff, 0x7f][..], // > u32::MAX
            &[0x80, 0x00][..],                   // zero, non-minimal
            &[0x81, 0x80, 0x00][..],
        ] {
            assert!(
                matches!(decode_len(bad), Err(FrameError::MalformedPrefix)),
                "{bad:?}"
            );
            let mut reader = Cursor::new(bad.to_vec());
            let got = block_on(read_frame(&mut reader, usize::MAX));
            assert!(matches!(got, Err(FrameError::MalformedPrefix)), "{bad:?}");
        }
    }

    #[test]
    fn oversized_frame_is_rejected_before_its_payload_arrives() {
        let mut buf = [0u8; MAX_PREFIX_LEN];
        let n = encode_len(1_000_000, &mut buf);
        // Only the prefix is on the wire: the cap must trip without waiting for a payload.
        let mut reader = Cursor::new(buf[..n].to_vec());
        let got = block_on(read_frame(&mut reader, 1024));
        assert!(matches!(
            got,
            Err(FrameError::TooLarge {
                len: 1_000_000,
                max: 1024
            })
        ));
    }

    proptest::proptest! {
        /// Whatever a peer sends, reading frames ends in frames, a clean end, or an
        /// error: never a panic, never a frame over the cap.
        #[test]
        fn arbitrary_input_never_panics(wire in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048), max in 0usize..512) {
            block_on(async {
                let mut reader = Cursor::new(wire);
                while let Ok(Some(frame)) = read_frame(&mut reader, max).await {
                    assert!(frame.len() <= max);
                }
            });
        }

        #[test]
        fn any_frames_round_trip(frames in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), 0..20)) {
            proptest::prop_assert_eq!(roundtrip(&frames, 300), frames);
        }
    }

    #[test]
    fn truncated_frame_is_an_io_error() {
        let mut reader = Cursor::new(vec![5u8, 1, 2]);
        let got = block_on(read_frame(&mut reader, 1024));
        assert!(matches!(got, Err(FrameError::Io(_))));
    }
}
