//! Entry points for the fuzz targets in `fuzz/` and their corpus test
//! (`tests/fuzz_corpus.rs`): the sync-stream framing they exercise is `pub(crate)`, and
//! widening it would make it API. Hidden from the docs; nothing else should call these.

use futures::executor::block_on;
use futures::io::Cursor;

use crate::frame::{self, MAX_PREFIX_LEN};

/// The length prefix at the start of `bytes`, as the sync stream reads it from a peer:
/// `Ok(None)` when more bytes are needed, else the length and how many bytes it took.
pub fn decode_frame_len(bytes: &[u8]) -> Result<Option<(u32, usize)>, String> {
    frame::decode_len(bytes).map_err(|error| error.to_string())
}

/// The length prefix this crate writes for a frame of `len` bytes.
pub fn encode_frame_len(len: u32) -> Vec<u8> {
    let mut buf = [0u8; MAX_PREFIX_LEN];
    let n = frame::encode_len(len, &mut buf);
    buf[..n].to_vec()
}

/// Reads frames of at most `max` bytes from `wire` as from a peer's stream, until a
/// clean end (`None`) or the error that stopped it.
pub fn read_frames(wire: &[u8], max: usize) -> (Vec<Vec<u8>>, Option<String>) {
    let mut reader = Cursor::new(wire);
    let mut frames = Vec::new();
    loop {
        match block_on(frame::read_frame(&mut reader, max)) {
            Ok(Some(payload)) => frames.push(payload),
            Ok(None) => return (frames, None),
            Err(error) => return (frames, Some(error.to_string())),
        }
    }
}
