//! Check for the `frame_prefix` fuzz target: the sync stream's framing, a varint length
//! prefix and then that many bytes (`peerdoc-net`'s `frame.rs`, reached through its
//! hidden `fuzzing` module).
//!
//! Shared by `fuzz/fuzz_targets/frame_prefix.rs` and the stable corpus test
//! `crates/peerdoc-net/tests/fuzz_corpus.rs`. Panics when a property fails.

use peerdoc_net::fuzzing::{decode_frame_len, encode_frame_len, read_frames};

/// Longest varint prefix the stream accepts (five 7-bit groups cover a `u32`).
const MAX_PREFIX_LEN: usize = 5;

/// The cap the stream reader is given here: small, so that fuzzed lengths both pass
/// and trip it.
const MAX_FRAME: usize = 256;

/// Besides "never panics":
/// - a decoded prefix took at most five bytes of the input, and is the one and only
///   encoding of its length (the decoder refuses non-minimal ones), so re-encoding gives
///   back exactly the bytes it took;
/// - "need more bytes" is only said of fewer than five bytes;
/// - read as a stream, the input yields frames within the cap that, written out again,
///   are exactly the start of the input.
pub(crate) fn check(data: &[u8]) {
    match decode_frame_len(data) {
        Ok(Some((len, used))) => {
            assert!(
                (1..=MAX_PREFIX_LEN).contains(&used),
                "prefix of {used} bytes"
            );
            assert!(used <= data.len(), "prefix longer than the input");
            assert_eq!(
                encode_frame_len(len),
                data[..used],
                "prefix is not the encoding of its length"
            );
        }
        Ok(None) => assert!(data.len() < MAX_PREFIX_LEN, "incomplete after 5 bytes"),
        Err(_) => {}
    }

    let (frames, _stopped) = read_frames(data, MAX_FRAME);
    let mut rewritten = Vec::new();
    for frame in &frames {
        assert!(frame.len() <= MAX_FRAME, "frame of {} bytes", frame.len());
        let len = u32::try_from(frame.len()).expect("within the cap");
        rewritten.extend(encode_frame_len(len));
        rewritten.extend_from_slice(frame);
    }
    assert!(
        data.starts_with(&rewritten),
        "frames do not re-frame to the input they came from"
    );
}
