//! Check for the `reconcile_payload` fuzz target: the binary range payload carried in
//! `peerdoc/reconcile` messages (`peerdoc_core::reconcile::Message::decode`), and the
//! responder that acts on it.
//!
//! Shared by `fuzz/fuzz_targets/reconcile_payload.rs` and the stable corpus test
//! `crates/peerdoc-core/tests/fuzz_corpus.rs`. Panics when a property fails.

use peerdoc_core::reconcile::{
    Bound, ItemSet, Message, RangeBody, ReconcileConfig, Reconciliation,
};
use peerdoc_core::{DocumentId, HeadsDigest};

/// Besides "never panics": a decoded payload keeps the invariants the decoder promises
/// (ranges increase and end at infinity, items sorted), re-encodes to bytes that decode
/// to the same payload, and is never longer than its input once re-encoded (the decoder
/// accepts non-minimal varints and bounds, the encoder never writes them). A responder
/// holding a few documents answers any payload with a payload that decodes and fits
/// its budget.
pub(crate) fn check(data: &[u8]) {
    let config = ReconcileConfig::default();
    let mut responder = Reconciliation::respond(&config);
    if let Ok(Some(reply)) = responder.receive(&small_set(), data) {
        assert!(reply.len() <= config.max_payload, "reply over the budget");
        assert!(Message::decode(&reply).is_ok(), "the reply does not decode");
    }

    let Ok(message) = Message::decode(data) else {
        return;
    };
    let last = message.ranges.last().map(|range| range.upper);
    assert_eq!(
        last,
        Some(Bound::Infinity),
        "last range must end at infinity"
    );
    for pair in message.ranges.windows(2) {
        assert!(pair[0].upper < pair[1].upper, "bounds must increase");
    }
    for range in &message.ranges {
        if let RangeBody::Items { items, .. } = &range.body {
            assert!(
                items.windows(2).all(|pair| pair[0].0 < pair[1].0),
                "items must be sorted and distinct"
            );
        }
    }
    let bytes = message.encode();
    assert!(bytes.len() <= data.len(), "re-encoding grew the payload");
    assert_eq!(
        Message::decode(&bytes).as_ref(),
        Ok(&message),
        "re-encoded payload differs"
    );
    let _ = message.needs_reply();
}

/// Documents spread over the id space, so that fuzzed ranges both hit and miss them.
fn small_set() -> ItemSet {
    let mut set = ItemSet::new();
    for n in 0..8u8 {
        set.insert(
            DocumentId::from_bytes([n * 32 + 1; 16]),
            HeadsDigest([n; 16]),
        );
    }
    set
}
