//! Check for the `automerge_sync` fuzz target: the automerge sync message a peer puts in
//! the `data` of `sync` and `request`, decoded as `peerdoc-core` does on receipt
//! (`wire::decode_sync_data`: automerge's decoder, then the checks it leaves out),
//! applied to a document, and answered (`repo/peers.rs`).
//!
//! Most of the code is automerge's, fuzzed upstream too; it is here because a panic in
//! it is still a panic in our engine on peer input (this target found one: see
//! `wire/sync_data.rs`). Shared by `fuzz/fuzz_targets/automerge_sync.rs` and
//! `crates/peerdoc-core/tests/fuzz_corpus.rs`. Panics when a property fails.

use std::sync::OnceLock;

use automerge::sync::{self, Message, SyncDoc};
use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, AutoCommit, Automerge, ChangeHash, ROOT};
use peerdoc_core::wire::decode_sync_data;

/// Besides "never panics": applying the message to a document and answering it works or
/// fails cleanly, and the answer decodes; a message automerge could have written (hash
/// lists sorted, which its encoder debug-asserts) re-encodes to bytes that decode to the
/// same heads, needs and changes, and that re-encode to themselves.
pub(crate) fn check(data: &[u8]) {
    let Ok(message) = decode_sync_data(data) else {
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
        // Not `again == message`: an empty bloom filter is written without its
        // parameters, which then decode as zero. The bytes are stable from here on.
        assert_eq!(again.heads, message.heads, "re-encoded heads differ");
        assert_eq!(again.need, message.need, "re-encoded needs differ");
        assert_eq!(again.changes, message.changes, "re-encoded changes differ");
        assert_eq!(again.encode(), bytes, "re-encoding is not stable");
    }
}

/// A small document with history, built once: fuzzed messages are applied to copies.
fn document() -> &'static Automerge {
    static DOCUMENT: OnceLock<Automerge> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        // A fixed actor and time: the same document in every process.
        let mut doc = AutoCommit::new().with_actor(ActorId::from(&[3u8; 16][..]));
        doc.put(ROOT, "title", "run of show").expect("put");
        doc.commit_with(CommitOptions::default().with_time(0));
        doc.put(ROOT, "guests", 120).expect("put");
        doc.commit_with(CommitOptions::default().with_time(0));
        doc.document().clone()
    })
}
