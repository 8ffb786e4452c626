//! Check for the `invite_code` fuzz target: an invite code as a person types, pastes or
//! scans it (`peerdoc_team::InviteCode::parse`), and the binary form inside it
//! (`InviteCode::from_bytes`). Whoever hands out a code controls these bytes.
//!
//! Shared by `fuzz/fuzz_targets/invite_code.rs` and the stable corpus test
//! `crates/peerdoc-team/tests/fuzz_corpus.rs`. Panics when a property fails.

use peerdoc_team::{InviteCode, MAX_INVITE_ADDRS};

/// Besides "never panics": the binary form is canonical (what decodes re-encodes to the
/// same bytes), and a decoded code prints as text that parses back to it, in either case.
pub(crate) fn check(data: &[u8]) {
    if let Ok(code) = InviteCode::from_bytes(data) {
        assert_eq!(code.to_bytes(), data, "binary form is not canonical");
        text_round_trips(&code);
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(code) = InviteCode::parse(text)
    {
        let bytes = code.to_bytes();
        assert_eq!(InviteCode::from_bytes(&bytes).as_ref(), Ok(&code));
        text_round_trips(&code);
    }
}

fn text_round_trips(code: &InviteCode) {
    assert!(code.addrs().len() <= MAX_INVITE_ADDRS, "too many addresses");
    let text = code.to_string();
    assert_eq!(InviteCode::parse(&text).as_ref(), Ok(code), "{text}");
    let typed = text.to_lowercase().replace('-', " ");
    assert_eq!(InviteCode::parse(&typed).as_ref(), Ok(code), "{typed}");
}
