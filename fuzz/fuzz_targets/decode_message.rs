//! Feeds arbitrary bytes to the wire decoder, as a hostile peer would.
//!
//! Besides "never panics", it checks that whatever decodes re-encodes to bytes that
//! decode to the same message, and that encoding is then stable.

#![no_main]

use libfuzzer_sys::fuzz_target;
use peerdoc_core::wire::{DEFAULT_MAX_MESSAGE_SIZE, Message};

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = Message::decode(data, DEFAULT_MAX_MESSAGE_SIZE) {
        let bytes = message.encode();
        let again = Message::decode(&bytes, DEFAULT_MAX_MESSAGE_SIZE);
        assert_eq!(again.as_ref(), Ok(&message), "re-encoded message differs");
        assert_eq!(message.encode(), bytes, "encoding is not deterministic");
    }
});
