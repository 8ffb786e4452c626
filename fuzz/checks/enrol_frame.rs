//! Check for the `enrol_frame` fuzz target: the one frame each side of the enrolment
//! handshake reads from the other over plain TCP (`peerdoc_team::request_tag`,
//! `open_request`, `open_reply`), before either side knows who is talking.
//!
//! A fuzzer cannot forge the frames' seal, so the JSON under it is fed directly too:
//! anyone holding the invite code can seal whatever JSON they like.
//!
//! Shared by `fuzz/fuzz_targets/enrol_frame.rs` and the stable corpus test
//! `crates/peerdoc-team/tests/fuzz_corpus.rs`. Panics when a property fails.

use peerdoc_team::{
    InviteCode, InviteSecret, JoinRequest, Reply, open_reply, open_request, request_tag,
    seal_reply, seal_request,
};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng;

/// The invite secret the committed seeds are sealed under, so that the fuzzer starts
/// from frames that open.
pub(crate) const SEED_SECRET: [u8; 10] = *b"fuzz-seeds";

/// Besides "never panics": the tag is the frame's first eight bytes; a frame that opens
/// reseals into one that opens to the same request or reply; JSON that decodes as a
/// request or reply re-encodes to JSON that decodes the same.
pub(crate) fn check(data: &[u8]) {
    let secret = InviteSecret::from_bytes(SEED_SECRET);
    let mut rng = ChaCha20Rng::seed_from_u64(0);
    if let Ok(tag) = request_tag(data) {
        assert_eq!(
            tag.as_bytes()[..],
            data[..8],
            "tag is not the frame's start"
        );
    }
    if let Ok(request) = open_request(&secret, data) {
        let code = InviteCode::new(secret.clone(), Vec::new()).expect("no addresses");
        let frame = seal_request(&code, &request, &mut rng).expect("an opened request reseals");
        assert_eq!(
            open_request(&secret, &frame),
            Ok(request),
            "resealed request"
        );
    }
    if let Ok(reply) = open_reply(&secret, data)
        // A plain refusal near the size cap may not fit once sealed: that is not a bug.
        && let Ok(frame) = seal_reply(&secret, &reply, &mut rng)
    {
        assert_eq!(open_reply(&secret, &frame), Ok(reply), "resealed reply");
    }
    if let Ok(request) = serde_json::from_slice::<JoinRequest>(data) {
        let json = serde_json::to_vec(&request).expect("a request encodes");
        let again = serde_json::from_slice::<JoinRequest>(&json).expect("re-encoded request");
        assert_eq!(again, request, "re-encoded request differs");
    }
    if let Ok(reply) = serde_json::from_slice::<Reply>(data) {
        let json = serde_json::to_vec(&reply).expect("a reply encodes");
        let again = serde_json::from_slice::<Reply>(&json).expect("re-encoded reply");
        assert_eq!(again, reply, "re-encoded reply differs");
    }
}
