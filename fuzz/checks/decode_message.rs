//! Check for the `decode_message` fuzz target: one automerge-repo wire message, as a
//! hostile peer would send it (`peerdoc_core::wire::Message::decode`).
//!
//! Shared by `fuzz/fuzz_targets/decode_message.rs` and the stable corpus test
//! `crates/peerdoc-core/tests/fuzz_corpus.rs`, so that CI replays the corpus without
//! cargo-fuzz. Panics when a property fails.

use peerdoc_core::wire::{DEFAULT_MAX_MESSAGE_SIZE, Message, decode_heads};

/// Besides "never panics": whatever decodes re-encodes to bytes that decode to the same
/// message, and encoding is then stable. The payloads that peerdoc decodes further on
/// receipt (reconcile ranges, remote heads) are decoded too, as the repo would.
pub(crate) fn check(data: &[u8]) {
    let Ok(message) = Message::decode(data, DEFAULT_MAX_MESSAGE_SIZE) else {
        return;
    };
    let bytes = message.encode();
    let again = Message::decode(&bytes, DEFAULT_MAX_MESSAGE_SIZE);
    assert_eq!(again.as_ref(), Ok(&message), "re-encoded message differs");
    assert_eq!(message.encode(), bytes, "encoding is not deterministic");
    match &message {
        Message::Reconcile { data, .. } => {
            let _ = peerdoc_core::reconcile::Message::decode(data);
        }
        Message::RemoteHeadsChanged { new_heads, .. } => {
            for remote in new_heads.values() {
                let _ = decode_heads(&remote.heads);
            }
        }
        _ => {}
    }
}
