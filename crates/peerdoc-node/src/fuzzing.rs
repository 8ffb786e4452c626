//! Entry points for the fuzz targets in `fuzz/` and their corpus test
//! (`tests/fuzz_corpus.rs`): the gossip announcement codec they exercise is
//! `pub(crate)`, and widening it would make it API. Hidden from the docs; nothing else
//! should call these.

use automerge::ChangeHash;
use peerdoc_core::DocumentId;

use crate::announce::Announcement;

/// Decodes gossip bytes from a peer as the driver does: the document and the heads it
/// is announced at, or why the bytes are no announcement.
pub fn decode_announcement(bytes: &[u8]) -> Result<(DocumentId, Vec<ChangeHash>), String> {
    Announcement::decode(bytes)
        .map(|announcement| (announcement.doc, announcement.heads))
        .map_err(|error| error.to_string())
}

/// The announcement this node publishes for `doc` at `heads` (without the heads when
/// there are too many of them).
pub fn encode_announcement(doc: DocumentId, heads: &[ChangeHash]) -> Vec<u8> {
    Announcement::new(doc, heads).encode()
}
