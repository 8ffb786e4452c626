//! Check for the `gossip_announcement` fuzz target: the JSON "document D is at heads H"
//! that any device on the team's gossip topic can publish (`peerdoc-node`'s
//! `announce.rs`, reached through its hidden `fuzzing` module).
//!
//! Shared by `fuzz/fuzz_targets/gossip_announcement.rs` and the stable corpus test
//! `crates/peerdoc-node/tests/fuzz_corpus.rs`. Panics when a property fails.

use peerdoc_node::fuzzing::{decode_announcement, encode_announcement};

/// Most heads an announcement carries (`announce::MAX_HEADS`).
const MAX_HEADS: usize = 8;

/// Besides "never panics": a decoded announcement carries at most eight heads, and
/// re-encodes to bytes that decode to the same document and heads.
pub(crate) fn check(data: &[u8]) {
    let Ok((doc, heads)) = decode_announcement(data) else {
        return;
    };
    assert!(heads.len() <= MAX_HEADS, "{} heads", heads.len());
    let bytes = encode_announcement(doc, &heads);
    assert_eq!(
        decode_announcement(&bytes),
        Ok((doc, heads)),
        "re-encoded announcement differs"
    );
}
