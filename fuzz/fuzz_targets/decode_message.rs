//! Fuzz target `decode_message`: arbitrary bytes, as a hostile peer would send them, through the
//! check in `fuzz/checks/decode_message.rs` (shared with the stable corpus test that CI runs).

#![no_main]

#[path = "../checks/decode_message.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::check(data));
