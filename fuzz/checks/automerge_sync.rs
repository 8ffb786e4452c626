//! Check for the `automerge_sync` fuzz target: the automerge sync message a peer puts in
//! the `data` of `sync` and `request`, decoded (`automerge::sync::Message::decode`) and
//! applied to a document as `peerdoc-core` does on receipt (`repo/peers.rs`), followed
//! by the reply.
//!
//! The decoder is automerge's, fuzzed upstream too; it is here because a panic in it is
//! still a panic in our daemon on peer input. Shared by `fuzz/fuzz_targets/automerge_sync.rs`
//! and `crates/peerdoc-core/tests/fuzz_corpus.rs`. Panics when a property fails.

use std::sync::OnceLock;

use automerge::sync::{self, Message, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{AutoCommit, Automerge, ChangeHash, ROOT};

/// Besides "never panics": applying the message to a document and answering it works or
/// fails cleanly, and the answer decodes; a message automerge could have written (hash
/// lists sorted, which its encoder debug-asserts) re-encodes to bytes that decode to it.
pub(crate) fn check(data: &[u8]) {
    let Ok(message) = Message::decode(data) else {
        return;
    };
    let mut doc = document().clone();
    let mut state = sync::State::new();
    if doc
        .receive_sync_message(&mut state, message.clone())
        .is_ok()
        && let Some(reply) = doc.generate_sync_message(&mut state)
    {
        let bytes = reply.encode();
        assert!(Message::decode(&bytes).is_ok(), "our reply does not decode");
    }
    let sorted = |hashes: &[ChangeHash]| hashes.is_sorted();
    if sorted(&message.heads)
        && sorted(&message.need)
        && message.have.iter().all(|have| sorted(&have.last_sync))
    {
        let bytes = message.clone().encode();
        let again = Message::decode(&bytes).expect("re-encoded sync message must decode");
        assert_eq!(again, message, "re-encoded sync message differs");
    }
}

/// A small document with history, built once: fuzzed messages are applied to copies.
fn document() -> &'static Automerge {
    static DOCUMENT: OnceLock<Automerge> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut doc = AutoCommit::new();
        doc.put(ROOT, "title", "run of show").expect("put");
        doc.commit();
        doc.put(ROOT, "guests", 120).expect("put");
        doc.commit();
        doc.document().clone()
    })
}
